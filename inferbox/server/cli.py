"""Command line of a model replica: ``python -m inferbox.server --name NAME --framework F --model-dir PATH``.

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT: stop accepting, finish in-flight requests, drain
the batcher); 2 for a usage error; 3 when the model cannot be loaded, after printing one line
``inferbox-model-server: failed to load model: <message>`` to stderr (the supervisor reports it and
does not restart forever); 1 for any other fatal error.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from inferbox.server.errors import ModelLoadError

if TYPE_CHECKING:  # uvicorn itself is imported only once the arguments are known to be good
    import uvicorn

PROG = "inferbox-model-server"
EXIT_OK = 0
EXIT_FATAL = 1
EXIT_LOAD_FAILED = 3
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
BACKLOG = 2048

logger = logging.getLogger("inferbox.server")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inferbox.server",
        description="Serve one model over KServe V1 and Open Inference Protocol V2.",
    )
    parser.add_argument("--name", required=True, help="model name, as it appears in URLs")
    parser.add_argument(
        "--framework", required=True, help="sklearn, xgboost, lightgbm, onnx, pytorch or huggingface"
    )
    parser.add_argument(
        "--model-dir", required=True, type=Path, help="model directory, or the model file itself"
    )
    parser.add_argument("--port", type=int, help="TCP port to bind and listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind with --port (default 127.0.0.1)")
    parser.add_argument(
        "--fd",
        type=int,
        action="append",
        default=[],
        help="an inherited, already listening TCP socket to serve on (repeatable)",
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        help="also serve the gRPC Open Inference Protocol on this port of --host (0: a free one, printed"
        " as 'inferbox-model-server: grpc port N'); replicas of one model may share it",
    )
    parser.add_argument("--max-batch-size", type=int, default=32, help="rows per framework call (default 32)")
    parser.add_argument(
        "--max-batch-wait-ms",
        type=float,
        default=2.0,
        help="longest a batch waits for requests already arriving (default 2)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=32 * 1024 * 1024,
        help="larger request bodies are refused with 413 (default 32 MiB, as INFERBOX_MAX_BODY_BYTES)",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        help="exit when this process (the supervisor) dies, even by SIGKILL (Linux)",
    )
    parser.add_argument("--task", help="Hugging Face pipeline task (default: from the model's config.json)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        type=str.lower,
    )
    args = parser.parse_args(argv)
    if args.port is None and not args.fd:
        parser.error("give --port or at least one --fd")
    if args.grpc_port is not None and not 0 <= args.grpc_port <= 65535:
        parser.error("--grpc-port must be between 0 and 65535")
    if args.max_batch_size < 1:
        parser.error("--max-batch-size must be at least 1")
    if args.max_batch_wait_ms < 0:
        parser.error("--max-batch-wait-ms must not be negative")
    if args.max_body_bytes < 1024:
        parser.error("--max-body-bytes must be at least 1024")
    return args


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _inherited(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OSError(f"fd {fd} is not a socket: {exc.strerror}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()  # not ours to close
        raise OSError(f"fd {fd} is not a listening TCP socket")
    return sock


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> bool:
    """Ask the kernel for SIGTERM when the supervisor dies (Linux's PR_SET_PDEATHSIG), so that a killed
    control plane does not leave replicas answering on their ports. False when the parent is already
    gone (it died before the request was made) or the call is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return os.getppid() == parent_pid
    except (OSError, AttributeError):  # not Linux: the orphan reaper is the only guard
        return os.getppid() == parent_pid
    return os.getppid() == parent_pid


def _fail_load(message: str) -> int:
    print(f"{PROG}: failed to load model: {message}", file=sys.stderr, flush=True)
    return EXIT_LOAD_FAILED


class _StopRequest:
    """SIGTERM/SIGINT handler for the times uvicorn is not handling them: before it starts (the stop
    is remembered and applied to the server once it exists) and after it returns. uvicorn re-raises
    the signals it caught once its graceful shutdown is done; with this handler in place that is a
    no-op, so a graceful stop exits 0 instead of dying by the signal."""

    def __init__(self) -> None:
        self.requested = False
        self.server: uvicorn.Server | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True


def main(argv: list[str] | None = None) -> int:
    """Run a replica until it is told to stop; returns the process exit code."""
    stop = _StopRequest()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    args = parse_args(argv)
    if args.parent_pid is not None and not _die_with_parent(args.parent_pid):
        print(f"{PROG}: the supervisor (pid {args.parent_pid}) is gone; not starting", file=sys.stderr)
        return EXIT_FATAL
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)

    from inferbox.server.frameworks import find_model_file, missing_extra

    # Everything that can be checked without importing the framework fails fast, before serving.
    try:
        message = missing_extra(args.framework)
        if message is not None:
            return _fail_load(message)
        model_path = find_model_file(args.framework, args.model_dir)
    except ModelLoadError as exc:
        return _fail_load(str(exc))

    sockets: list[socket.socket] = []
    try:
        for fd in args.fd:
            sockets.append(_inherited(fd))
        if args.port is not None:
            sockets.append(_listen(args.host, args.port))
    except OSError as exc:
        print(f"{PROG}: cannot listen: {exc}", file=sys.stderr, flush=True)
        return EXIT_FATAL

    try:
        return _serve(args, model_path, sockets, stop)
    except Exception as exc:
        logger.exception("fatal error")
        print(f"{PROG}: fatal error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FATAL


def _serve(
    args: argparse.Namespace, model_path: Path, sockets: list[socket.socket], stop: _StopRequest
) -> int:
    import uvicorn

    from inferbox.server.app import AppConfig, build_app

    app = build_app(
        AppConfig(
            name=args.name,
            framework=args.framework,
            model_path=model_path,
            max_batch_size=args.max_batch_size,
            max_batch_wait_ms=args.max_batch_wait_ms,
            task=args.task,
            max_body_bytes=args.max_body_bytes,
            grpc_port=args.grpc_port,
            grpc_host=args.host,
        )
    )
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        ws="none",  # no websocket routes; skips importing a websocket implementation
        interface="asgi3",
        lifespan="on",
        access_log=False,
        log_config=None,  # keep the root logger's plain format set up above
        log_level=args.log_level,
        proxy_headers=False,  # a replica sits behind inferbox's own gateway; skip the middleware
        server_header=False,
        backlog=BACKLOG,
    )
    server = uvicorn.Server(config)
    stop.server = server

    def on_load_error(message: str) -> None:
        server.should_exit = True

    def on_loaded() -> None:
        # Everything allocated so far (framework, model) lives as long as the process: take it out of
        # the collector's generations so collections stay short and do not show up as latency spikes.
        gc.freeze()
        if app.grpc_port is not None:
            print(f"{PROG}: grpc port {app.grpc_port}", file=sys.stderr, flush=True)
        # The supervisor reads this line to know the replica is ready without polling for it.
        print(f"{PROG}: ready", file=sys.stderr, flush=True)

    app.on_load_error = on_load_error
    app.on_loaded = on_loaded
    if stop.requested:
        return EXIT_OK
    try:
        server.run(sockets=sockets)
    except SystemExit:
        # uvicorn exits the process (code 3, ours for a load failure) when the lifespan cannot start.
        if app.startup_error is None:
            raise
    if app.startup_error is not None:
        print(f"{PROG}: cannot listen: {app.startup_error}", file=sys.stderr, flush=True)
        return EXIT_FATAL
    if app.load_error is not None:
        return _fail_load(app.load_error)
    return EXIT_OK

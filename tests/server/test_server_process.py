"""The replica as a process: the command-line contract the supervisor relies on."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hiding import env_hiding
from server_helpers import (
    ServerProcess,
    free_port,
    load_failure_line,
    run_server_to_exit,
)

pytestmark = pytest.mark.timeout(120)

IRIS_ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def test_serves_on_inherited_fds(sklearn_dir: Path) -> None:
    first, second = listening_socket(), listening_socket()
    fds = [first.fileno(), second.fileno()]
    urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in (first, second)]
    args = ["--name", "iris", "--framework", "sklearn", "--model-dir", str(sklearn_dir)]
    for fd in fds:
        args += ["--fd", str(fd)]
    server = ServerProcess(args, base_url=urls[0], pass_fds=fds)
    try:
        # The parent keeps no copy: only the replica listens now.
        first.close()
        second.close()
        server.wait_ready()
        for url in urls:
            response = httpx.post(f"{url}/v1/models/iris:predict", json=IRIS_ROW)
            assert response.json() == {"predictions": [0]}
        assert server.stop() == 0, server.stderr
    finally:
        server.close()


def test_fd_that_is_not_listening_exits_1(sklearn_dir: Path) -> None:
    with socket.socket() as unbound:
        fd = str(unbound.fileno())
        args = ["--name", "m", "--framework", "sklearn", "--model-dir", str(sklearn_dir), "--fd", fd]
        result = subprocess.run(
            [sys.executable, "-m", "inferbox.server", *args],
            capture_output=True,
            text=True,
            timeout=60,
            pass_fds=[unbound.fileno()],
            check=False,
        )
    assert result.returncode == 1
    assert f"fd {fd} is not a listening TCP socket" in result.stderr


def test_sigterm_finishes_the_request_in_flight(sklearn_dir: Path) -> None:
    port = free_port()
    args = ["--name", "iris", "--framework", "sklearn", "--model-dir", str(sklearn_dir), "--port", str(port)]
    server = ServerProcess(args, base_url=f"http://127.0.0.1:{port}")
    try:
        server.wait_ready()
        body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
        with socket.create_connection(("127.0.0.1", port)) as conn:
            # Headers and half the body: the request is in flight, waiting for the rest.
            conn.sendall(
                b"POST /v1/models/iris:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
            )
            # Wait (bounded) until the replica has the request: it then counts as in flight.
            deadline = time.monotonic() + 10
            while httpx.get(f"{server.base_url}/inferbox/stats").json()["inflight"] != 1:
                assert time.monotonic() < deadline, "the half-sent request never counted as in flight"
                time.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)
            # Graceful shutdown first stops accepting; wait (bounded) until new connections are refused.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the replica kept accepting connections after SIGTERM")
            assert server.process.poll() is None  # still finishing our request
            conn.sendall(body[10:])
            response = b""
            while not response.endswith(b"}") and (chunk := conn.recv(65536)):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response
        assert response.endswith(b'{"predictions":[1]}'), response
        assert server.process.wait(timeout=15) == 0, server.stderr
        assert "Traceback" not in server.stderr
    finally:
        server.close()


def model_args(framework: str, model_dir: Path | str) -> list[str]:
    return [
        "--name",
        "m",
        "--framework",
        framework,
        "--model-dir",
        str(model_dir),
        "--port",
        str(free_port()),
    ]


def test_missing_path_exits_3(tmp_path: Path) -> None:
    result = run_server_to_exit(*model_args("sklearn", tmp_path / "nowhere"))
    assert result.returncode == 3
    assert "does not exist" in load_failure_line(result.stderr)


def test_directory_without_model_file_exits_3(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a model")
    result = run_server_to_exit(*model_args("sklearn", tmp_path))
    assert result.returncode == 3
    message = load_failure_line(result.stderr)
    assert "no model file" in message and ".joblib" in message


def test_two_candidate_files_exit_3_naming_both(tmp_path: Path, sklearn_dir: Path) -> None:
    model = (sklearn_dir / "model.joblib").read_bytes()
    (tmp_path / "a.joblib").write_bytes(model)
    (tmp_path / "b.pkl").write_bytes(model)
    result = run_server_to_exit(*model_args("sklearn", tmp_path))
    assert result.returncode == 3
    message = load_failure_line(result.stderr)
    assert "more than one model file" in message
    assert "a.joblib" in message and "b.pkl" in message


@pytest.mark.parametrize(
    ("framework", "filename", "content"),
    [
        ("sklearn", "model.joblib", b"this is not a pickle"),
        ("xgboost", "model.json", b'{"learner": 42}'),
        ("lightgbm", "model.txt", b"tree\nnonsense=1\n"),
        ("onnx", "model.onnx", b"\x00\x01garbage"),
    ],
)
def test_corrupt_model_file_exits_3(tmp_path: Path, framework: str, filename: str, content: bytes) -> None:
    (tmp_path / filename).write_bytes(content)
    result = run_server_to_exit(*model_args(framework, tmp_path))
    assert result.returncode == 3, result.stderr
    message = load_failure_line(result.stderr)
    assert message.startswith(f"cannot load {tmp_path / filename}: ")
    assert "Traceback" not in result.stderr


def test_model_file_given_directly_and_sigint_is_graceful(sklearn_dir: Path) -> None:
    port = free_port()
    args = ["--name", "iris", "--framework", "sklearn", "--model-dir", str(sklearn_dir / "model.joblib")]
    server = ServerProcess([*args, "--port", str(port)], base_url=f"http://127.0.0.1:{port}")
    try:
        server.wait_ready()
        assert httpx.post(f"{server.base_url}/v1/models/iris:predict", json=IRIS_ROW).status_code == 200
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=15) == 0, server.stderr
        assert "Traceback" not in server.stderr
    finally:
        server.close()


def test_file_of_another_framework_exits_3(sklearn_dir: Path) -> None:
    result = run_server_to_exit(*model_args("xgboost", sklearn_dir / "model.joblib"))
    assert result.returncode == 3
    assert "not a model file for framework 'xgboost'" in load_failure_line(result.stderr)


def test_unknown_framework_exits_3(sklearn_dir: Path) -> None:
    result = run_server_to_exit(*model_args("tensorflow", sklearn_dir))
    assert result.returncode == 3
    assert "unknown framework 'tensorflow'" in load_failure_line(result.stderr)


# Each case hides one package only: huggingface lacks transformers even where torch is installed.
@pytest.mark.parametrize(("framework", "module"), [("pytorch", "torch"), ("huggingface", "transformers")])
def test_missing_optional_extra_exits_3(tmp_path: Path, framework: str, module: str) -> None:
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "config.json").write_text("{}")
    result = run_server_to_exit(*model_args(framework, tmp_path), env=env_hiding(module))
    assert result.returncode == 3
    assert load_failure_line(result.stderr) == (
        f"framework {framework!r} needs the optional extra: pip install 'inferbox[{framework}]'"
    )


def test_usage_errors_exit_2(sklearn_dir: Path) -> None:
    no_listener = run_server_to_exit("--name", "m", "--framework", "sklearn", "--model-dir", str(sklearn_dir))
    assert no_listener.returncode == 2
    assert "--port or at least one --fd" in no_listener.stderr
    assert run_server_to_exit("--framework", "sklearn").returncode == 2


def test_port_in_use_exits_1(sklearn_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_server_to_exit(
            "--name", "m", "--framework", "sklearn", "--model-dir", str(sklearn_dir), "--port", str(port)
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr

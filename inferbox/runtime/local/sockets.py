"""Listening sockets that the runtime binds and its replicas inherit.

The runtime binds, the replicas accept: every replica of a model accepts on the same listening socket
(one kernel accept queue), so callers of the model's stable URL are spread over the replicas, and a
connection that arrives while no replica runs waits in the queue instead of being refused.
"""

from __future__ import annotations

import errno
import random
import socket

# Stable ports are chosen below Linux's ephemeral range (32768-60999), so that after a restart of
# inferbox the port is not held by some outgoing connection's local end.
STABLE_PORT_RANGE = (20000, 32000)
BACKLOG = 1024


class PortInUse(OSError):
    """The requested port is held by another socket."""


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening, inheritable by child processes.

    SO_REUSEADDR lets the runtime bind its stable port again right after a restart, while old
    connections linger in TIME_WAIT; it does not let two live listeners share a port on Linux."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(errno.EADDRINUSE, f"port {port} on {host} is in use") from exc
        raise
    # Blocking mode is left alone: the file description is shared with the replicas, and the runtime
    # itself never accepts on it (it only watches it for readability).
    sock.set_inheritable(True)
    return sock


def listen_stable(host: str, port: int | None, *, attempts: int = 64) -> socket.socket:
    """The model's stable socket: on `port`, or on a free port from STABLE_PORT_RANGE when None."""
    if port is not None:
        return listen(host, port)
    low, high = STABLE_PORT_RANGE
    for _ in range(attempts):
        try:
            return listen(host, random.randint(low, high - 1))
        except PortInUse:
            continue
    # A crowded range: let the kernel choose (an ephemeral port still works until the next restart).
    return listen(host, 0)


def reserve_shared(host: str) -> socket.socket:
    """A port for a model's replicas to serve gRPC on together: bound with SO_REUSEPORT on a port the
    kernel picks, never listening. It holds the port for the model's life (no socket without
    SO_REUSEPORT can take it) yet receives no connections; each replica's gRPC server binds the port
    with SO_REUSEPORT too and the kernel spreads connections over the replicas listening. gRPC cannot
    adopt an inherited socket as uvicorn does, hence a shared port rather than a shared socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, 0))
    except OSError:
        sock.close()
        raise
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def url_host(host: str) -> str:
    """The host to put into URLs for a socket bound on `host` (a wildcard address is reached on loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host

"""The two kinds of failure the server distinguishes: a request that cannot be answered, and a model
that cannot be loaded."""

from __future__ import annotations

import re

# Framework prefixes that say nothing to a caller: xgboost's "[12:34:56] /src/file.cc:123: " and
# onnxruntime's "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : ".
_PREFIXES = re.compile(r"^(\[\d\d:\d\d:\d\d\] \S+:\d+: |\[ONNXRuntimeError\] : \d+ : \w+ : )")
# Where a framework's message turns into a stack trace.
_TRACE_STARTS = ("Stack trace", "[bt]", "Traceback")
_MAX_MESSAGE = 500


class InferenceError(Exception):
    """A request failed; ``status`` is the HTTP status and ``message`` a one-line reason for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ModelLoadError(Exception):
    """The model could not be loaded (missing or ambiguous file, corrupt file, missing optional extra).

    The command line turns it into exit code 3, so the supervisor reports the model as failed rather
    than restarting it forever.
    """


def one_line(exc: BaseException) -> str:
    """A short single-line description of ``exc``, fit for an error body: no traceback, no file paths
    of framework sources, at most a few hundred characters."""
    kept: list[str] = []
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith(_TRACE_STARTS):
            break
        if line:
            kept.append(line)
    message = _PREFIXES.sub("", " ".join(kept)) or type(exc).__name__
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return message

"""kubectl's printing: AGE as it rounds it, its tables, `describe`'s key/value blocks, json and yaml.

Pure functions of their arguments, so that each can be checked against kubectl's own output.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import yaml

# A `describe` block: (key, value) pairs. A value is a str, a list of lines, a nested block, or a str
# beginning with a newline (a preformatted body, such as a table).
Block = list[tuple[str, Any]]

_MIN_WIDTH = 6  # kubectl's tabwriter: minwidth 6, padding 3
_PADDING = 3


def human_duration(seconds: float) -> str:
    """kubectl's AGE: `duration.HumanDuration` (k8s.io/apimachinery), rounding as it does.

    Whole seconds up to 2 minutes (`119s`), then minutes and seconds up to 10 minutes (`9m59s`), minutes
    up to 3 hours (`179m`), hours and minutes up to 8 hours (`7h59m`), hours up to 2 days (`47h`), days
    and hours up to 8 days (`7d23h`), days up to 2 years (`729d`), years and days up to 8 years
    (`7y364d`), then years. Every unit is truncated, never rounded up. Less than two seconds in the
    future (clock skew) reads `0s`; two or more is `<invalid>`."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(since: datetime | None, now: datetime) -> str:
    """The AGE column: how long before `now` the object was created."""
    return "<unknown>" if since is None else human_duration((now - since).total_seconds())


def rfc1123(value: datetime | None) -> str:
    """A time as `describe` prints it: `Mon, 02 Jan 2006 15:04:05 +0000`."""
    return "<unknown>" if value is None else value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def labels_text(labels: dict[str, str]) -> list[str]:
    """Labels as `describe` lists them: one `key=value` a line, sorted, or `<none>`."""
    return [f"{k}={v}" for k, v in sorted(labels.items())] or ["<none>"]


def mebibytes(num_bytes: int) -> str:
    """Memory as `kubectl top` prints it: whole Mi."""
    return f"{num_bytes // (1024 * 1024)}Mi"


def table(headers: list[str] | None, rows: list[list[str]], indent: str = "") -> str:
    """Columns as kubectl's tabwriter lays them out: each but the last padded to its widest cell plus
    three spaces, at least six wide (kubectl's minwidth 6, padding 3); trailing spaces are dropped."""
    lines = ([headers] if headers else []) + rows
    if not lines:
        return ""
    columns = max(len(line) for line in lines)
    widths = [
        max(_MIN_WIDTH, max(len(line[i]) if i < len(line) else 0 for line in lines) + _PADDING)
        for i in range(columns - 1)
    ]
    out = []
    for line in lines:
        cells = [cell.ljust(widths[i]) if i < columns - 1 else cell for i, cell in enumerate(line)]
        out.append(indent + "".join(cells).rstrip())
    return "\n".join(out)


def _is_lines(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def describe_block(block: Block, indent: int = 0, min_width: int = 0) -> list[str]:
    """`kubectl describe`'s key/value layout: keys aligned per block; a list value continues on the
    next lines under the first; a nested block is indented two spaces; a str beginning with a newline
    is a preformatted body (a table) printed under the key."""
    inline = [k for k, v in block if not isinstance(v, list | tuple) or _is_lines(v)]
    width = max([len(k) + 2 for k in inline] + [min_width])
    pad = " " * indent
    out: list[str] = []
    for key, value in block:
        label = f"{key}:"
        if isinstance(value, str) and value.startswith("\n"):
            out.append(pad + label)
            out.extend(pad + "  " + line for line in value[1:].splitlines())
        elif isinstance(value, list | tuple) and not _is_lines(value):
            out.append(pad + label)
            out.extend(describe_block(list(value), indent + 2))
        elif isinstance(value, list | tuple):
            lines = list(value) or ["<none>"]
            out.append(pad + label.ljust(width) + lines[0])
            out.extend(pad + " " * width + line for line in lines[1:])
        else:
            out.append(pad + label.ljust(width) + str(value))
    return out


def dump(obj: Any, fmt: str) -> str:
    """An object as `-o json` (four-space indent) or `-o yaml` prints it, keys sorted."""
    if fmt == "json":
        return json.dumps(obj, indent=4, sort_keys=True)
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).rstrip("\n")

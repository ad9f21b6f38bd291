"""Label selectors (`-l`), as kubectl and the API server read them.

Requirements are separated by commas outside parentheses and all must hold: equality (`a=b`, `a==b`),
inequality (`a!=b`, true too where the label is missing), set-based (`a in (x,y)`, `a notin (x,y)`, the
latter true where the label is missing) and existence (`a`, `!a`). An empty selector matches everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Labels = dict[str, str]
Predicate = Callable[[Labels], bool]

_SET_REQ = re.compile(r"^([A-Za-z0-9._/\-]+)\s+(in|notin)\s*\(([^()]*)\)$")
_EQ_REQ = re.compile(r"^([A-Za-z0-9._/\-]+)\s*(==|=|!=)\s*([A-Za-z0-9._\-]*)$")
_EXISTS = re.compile(r"^(!?)\s*([A-Za-z0-9._/\-]+)$")


class SelectorError(ValueError):
    """The selector does not parse; the message reads as the API server's."""


def _requirements(text: str) -> list[str]:
    """The selector split at the commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _requirement(req: str) -> Predicate:
    """One requirement, already stripped and not empty, as a predicate."""
    if m := _SET_REQ.match(req):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ_REQ.match(req):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS.match(req):
        negate, key = m.group(1) == "!", m.group(2)
        return lambda labels: (key in labels) != negate
    raise SelectorError(f'unable to parse requirement: "{req}"')


def parse_selector(text: str) -> Predicate:
    """A label selector (`a=b,c!=d,e in (f,g),!h`) as a predicate on labels; SelectorError if it does
    not parse."""
    checks: list[Predicate] = []
    for raw in _requirements(text):
        req = raw.strip()
        if not req:
            if text.strip():
                raise SelectorError(f'unable to parse requirement: found "" in "{text}"')
            continue
        checks.append(_requirement(req))
    return lambda labels: all(check(labels) for check in checks)

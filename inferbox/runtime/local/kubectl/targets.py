"""What a command names, and kubectl's errors when it names nothing there.

Its namespace (`-n`, else kubectl's `default`), its targets (`TYPE[,TYPE] [NAME...]` or
`TYPE/NAME...`), its label selector (`-l`), and the objects of the snapshot those pick.
"""

from __future__ import annotations

from inferbox.runtime.kubectl.guard import KubectlCommand
from inferbox.runtime.local.kubectl.items import Item
from inferbox.runtime.local.kubectl.kinds import ALL_CATEGORY, Kind, resolve_kind
from inferbox.runtime.local.kubectl.selectors import Predicate, SelectorError, parse_selector

DEFAULT_NAMESPACE = "default"  # kubectl's, when no -n is given


class Fail(Exception):
    """An answer that is an error, as kubectl prints it (exit code 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def namespace_of(command: KubectlCommand) -> str:
    return command.value("namespace") or DEFAULT_NAMESPACE


def no_resources(namespace: str | None) -> str:
    return f"No resources found in {namespace} namespace." if namespace else "No resources found"


def unknown_type(word: str) -> Fail:
    return Fail(f'error: the server doesn\'t have a resource type "{word}"')


def not_found(kind: Kind, name: str) -> str:
    return f'Error from server (NotFound): {kind.qualified} "{name}" not found'


def _named_targets(args: list[str]) -> list[tuple[Kind, list[str]]]:
    """`TYPE/NAME...`: one (kind, [name]) each."""
    if not all("/" in a for a in args):
        raise Fail(
            "error: there is no need to specify a resource type as a separate argument when passing "
            "arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of "
            "'kubectl get resource resource/<resource_name>'"
        )
    out: list[tuple[Kind, list[str]]] = []
    for arg in args:
        type_word, _, name = arg.partition("/")
        kind = resolve_kind(type_word)
        if kind is None:
            raise unknown_type(type_word)
        if not name:
            raise Fail("error: arguments in resource/name form must have a single resource and name")
        out.append((kind, [name]))
    return out


def targets(command: KubectlCommand, verb: str) -> list[tuple[Kind, list[str]]]:
    """(kind, names) pairs from `TYPE[,TYPE] [NAME...]` or `TYPE/NAME...`; `all` is the workload kinds."""
    args = list(command.args)
    if not args:
        raise Fail(
            f'error: you must specify the type of resource to {verb}. Use "kubectl api-resources" for a '
            "complete list of supported resources."
        )
    if any("/" in a for a in args):
        return _named_targets(args)
    kinds: list[Kind] = []
    for word in args[0].split(","):
        if not word:
            continue
        if word.lower() == "all":
            kinds.extend(ALL_CATEGORY)
            continue
        kind = resolve_kind(word)
        if kind is None:
            raise unknown_type(word)
        kinds.append(kind)
    # kubectl prints each kind once, in the order first named.
    unique = list(dict.fromkeys(kinds))
    return [(kind, args[1:]) for kind in unique]


def selector(command: KubectlCommand) -> Predicate:
    """The command's `-l` as a predicate on labels (everything matches without one)."""
    try:
        return parse_selector(command.value("selector") or "")
    except SelectorError as exc:
        raise Fail(f"error: {exc}") from None


def scoped(kind: Kind, items: list[Item], namespace: str | None) -> list[Item]:
    """The items in `namespace` (all of them for None, or for a cluster-scoped kind)."""
    if not kind.namespaced or namespace is None:
        return items
    return [i for i in items if i.namespace == namespace]


def find(items: list[Item], name: str, *, prefix: bool = False) -> list[Item]:
    """The items called `name`; with `prefix` (as `describe` does), those whose name starts with it when
    none is called exactly that."""
    exact = [i for i in items if i.name == name]
    if exact or not prefix:
        return exact
    return [i for i in items if i.name.startswith(name)]


def pick(
    items: list[Item], kind: Kind, names: list[str], *, prefix: bool, missing_ok: bool
) -> tuple[list[Item], list[str]]:
    """The items each name picks, in the order named, and a NotFound error for each name that picks
    none (unless `missing_ok`, as `--ignore-not-found`). No names picks every item."""
    if not names:
        return items, []
    picked: list[Item] = []
    errors: list[str] = []
    for name in names:
        hits = find(items, name, prefix=prefix)
        if not hits and not missing_ok:
            errors.append(not_found(kind, name))
        picked.extend(hits)
    return picked, errors

"""Parse an admin's kubectl command into words and refuse anything that is not a plain read.

The command is split the way a POSIX shell splits words (`shlex.split`: quotes honoured) but is never
handed to a shell. What passes is a `KubectlCommand`: the argv to give kubectl (without the leading
`kubectl`), the verb, the positional arguments and the flags by their long names.

Rules, in order (the first that matches gives the reason):
- an empty command, control characters, or a command that does not split (an open quote);
- shell metacharacters anywhere in a word (`;`, `&`, `|`, backticks, `$(`, `${`, `<`, `>`): nothing
  here is run by a shell, so they can only be a mistake or an attempt;
- flags that leave the admin's view of this cluster: another server, credentials, kubeconfig, context,
  impersonation, TLS switched off, raw API paths, files read from the server's disk, templates, verbose
  client logging, and flags that never end (`--watch`, `logs -f`);
- verbs other than the read verbs in `ALLOWED_VERBS`;
- flags that are not known for the verb: an allowlist (`GLOBAL_FLAGS` and `VERB_FLAGS`, read through
  `allowed_flags`), so that a flag this module does not know cannot slip past it to a real kubectl. It
  is the only list of which flags exist per verb: a backend that cannot honour some of them (the local
  runtime's answers) says so itself, naming flags from this list;
- secrets in any spelling (`secret`, `secrets`, `secrets/x`, `Secret.v1`, `pods,secrets`), and output
  of service accounts in formats that could print their tokens;
- output formats other than the printers kubectl has for reading (`go-template`, `jsonpath-file`, … are
  refused).

Flag names are matched the way kubectl matches them: `_` and `-` are the same, a short flag may carry
its value (`-ojson`, `-o=json`) or share its dash with boolean ones (`-Aw`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

ALLOWED_VERBS = ("get", "describe", "logs", "top", "api-resources", "version", "explain")
MAX_COMMAND_LENGTH = 2000

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Longest first, so that `&&` is reported as `&&` and not as `&`.
_METACHARACTERS = ("$(", "${", "&&", "||", ";", "&", "|", "`", "<", ">")
_TRUE = ("true", "t", "1")
_FALSE = ("false", "f", "0")
_BOOLEANS = (*_TRUE, *_FALSE)


class CommandRefused(Exception):
    """The command is not allowed; `reason` says why, in a sentence fit for the admin."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Flag:
    """One flag as given: `name` is its long name (`namespace` for `-n`), `value` None for a boolean
    given without one."""

    name: str
    value: str | None
    spelling: str

    @property
    def enabled(self) -> bool:
        """For a boolean flag: given bare, or given a true value."""
        return self.value is None or self.value.lower() in _TRUE


@dataclass(frozen=True)
class KubectlCommand:
    """A command that passed the guard."""

    argv: tuple[str, ...]  # the words for kubectl, without the leading "kubectl"
    verb: str
    args: tuple[str, ...]  # positional arguments after the verb
    flags: tuple[Flag, ...]

    def value(self, name: str) -> str | None:
        """The last value given for a flag (kubectl keeps the last), or None."""
        found = [f for f in self.flags if f.name == name]
        return found[-1].value if found else None

    def enabled(self, name: str) -> bool:
        found = [f for f in self.flags if f.name == name]
        return bool(found) and found[-1].enabled

    def has(self, name: str) -> bool:
        return any(f.name == name for f in self.flags)


@dataclass(frozen=True)
class _Spec:
    name: str
    takes_value: bool
    short: str | None = None


def _specs(*items: tuple[str, bool] | tuple[str, bool, str]) -> dict[str, _Spec]:
    return {item[0]: _Spec(*item) for item in items}


V, B = True, False  # takes a value / is a boolean

GLOBAL_FLAGS = _specs(
    ("namespace", V, "n"),
    ("request-timeout", V),
    ("match-server-version", B),
    ("warnings-as-errors", B),
    ("disable-compression", B),
    ("help", B, "h"),
)

# The one allow-list: every flag each verb takes, beside GLOBAL_FLAGS which every verb takes.
VERB_FLAGS: dict[str, dict[str, _Spec]] = {
    "get": _specs(
        ("output", V, "o"),
        ("selector", V, "l"),
        ("field-selector", V),
        ("sort-by", V),
        ("label-columns", V, "L"),
        ("chunk-size", V),
        ("subresource", V),
        ("all-namespaces", B, "A"),
        ("show-kind", B),
        ("show-labels", B),
        ("no-headers", B),
        ("ignore-not-found", B),
        ("recursive", B, "R"),
        ("server-print", B),
        ("allow-missing-template-keys", B),
        ("show-managed-fields", B),
        ("output-watch-events", B),
    ),
    "describe": _specs(
        ("selector", V, "l"),
        ("all-namespaces", B, "A"),
        ("show-events", B),
        ("chunk-size", V),
        ("recursive", B, "R"),
    ),
    "logs": _specs(
        ("container", V, "c"),
        ("previous", B, "p"),
        ("tail", V),
        ("since", V),
        ("since-time", V),
        ("timestamps", B),
        ("selector", V, "l"),
        ("all-containers", B),
        ("limit-bytes", V),
        ("max-log-requests", V),
        ("prefix", B),
        ("pod-running-timeout", V),
        ("ignore-errors", B),
        ("all-pods", B),
    ),
    "top": _specs(
        ("selector", V, "l"),
        ("all-namespaces", B, "A"),
        ("containers", B),
        ("no-headers", B),
        ("sort-by", V),
        ("use-protocol-buffers", B),
        ("sum", B),
        ("field-selector", V),
        ("show-capacity", B),
    ),
    "api-resources": _specs(
        ("output", V, "o"),
        ("namespaced", B),
        ("api-group", V),
        ("cached", B),
        ("no-headers", B),
        ("sort-by", V),
        ("verbs", V),
        ("categories", V),
    ),
    "version": _specs(("client", B), ("output", V, "o")),
    "explain": _specs(("recursive", B), ("api-version", V), ("output", V, "o")),
}


def _flag_table(verb: str) -> dict[str, _Spec]:
    return {**GLOBAL_FLAGS, **VERB_FLAGS[verb]}


def allowed_flags(verb: str) -> frozenset[str]:
    """The long names of every flag `verb` takes, global ones included (KeyError for a verb that is
    not allowed)."""
    return frozenset(_flag_table(verb))


# Flags refused wherever they appear, with the reason. Keys are long names; short spellings below.
_LEAVES_VIEW = "points kubectl away from this cluster's admin view"
DENIED_FLAGS: dict[str, str] = {
    "server": f"it {_LEAVES_VIEW} (another API server)",
    "kubeconfig": f"it {_LEAVES_VIEW} (another kubeconfig)",
    "context": f"it {_LEAVES_VIEW} (another context)",
    "cluster": f"it {_LEAVES_VIEW} (another cluster)",
    "user": "it changes the credentials kubectl uses",
    "token": "it changes the credentials kubectl uses",
    "username": "it changes the credentials kubectl uses",
    "password": "it changes the credentials kubectl uses",
    "client-certificate": "it changes the credentials kubectl uses",
    "client-key": "it changes the credentials kubectl uses",
    "certificate-authority": "it changes which servers kubectl trusts",
    "tls-server-name": "it changes which servers kubectl trusts",
    "insecure-skip-tls-verify": "it turns off TLS verification",
    "insecure-skip-tls-verify-backend": "it turns off TLS verification",
    "as": "impersonation is not allowed",
    "as-group": "impersonation is not allowed",
    "as-uid": "impersonation is not allowed",
    "raw": "raw API paths bypass the resource rules",
    "filename": "it reads files or URLs from the server",
    "kustomize": "it reads files from the server",
    "template": "templates can print any field, secrets included",
    "v": "verbose client logging prints the client's configuration",
    "vmodule": "verbose client logging prints the client's configuration",
    "log-file": "it writes files on the server",
    "log-dir": "it writes files on the server",
    "cache-dir": "it writes files on the server",
    "profile": "it writes files on the server",
    "profile-output": "it writes files on the server",
    "watch": "watching never ends; run the command again instead",
    "watch-only": "watching never ends; run the command again instead",
    "follow": "following never ends; use --tail instead",
}
_DENIED_SHORT = {"s": "server", "v": "v", "k": "kustomize", "w": "watch"}

OUTPUT_FORMATS = ("json", "yaml", "wide", "name", "jsonpath", "jsonpath-as-json", "custom-columns")
_DENIED_OUTPUT = {
    "go-template": "templates can print any field, secrets included",
    "go-template-file": "templates can print any field, secrets included, and it reads a file",
    "template": "templates can print any field, secrets included",
    "templatefile": "templates can print any field, secrets included, and it reads a file",
    "jsonpath-file": "it reads a template file from the server",
    "custom-columns-file": "it reads a template file from the server",
}
_SECRET_TYPES = frozenset({"secret", "secrets"})
_SERVICE_ACCOUNT_TYPES = frozenset({"sa", "serviceaccount", "serviceaccounts"})
_TYPE_ARG_VERBS = ("get", "describe", "explain", "top")


def _normal(name: str) -> str:
    # kubectl normalises word separators: --as_group is --as-group.
    return name.replace("_", "-").lower()


def _refuse_flag(spelling: str, long_name: str) -> CommandRefused:
    return CommandRefused(f"flag {spelling} is not allowed: {DENIED_FLAGS[long_name]}")


def _words(command: str) -> list[str]:
    if not command or not command.strip():
        raise CommandRefused("empty command")
    if len(command) > MAX_COMMAND_LENGTH:
        raise CommandRefused(f"the command is longer than {MAX_COMMAND_LENGTH} characters")
    if _CONTROL.search(command):
        raise CommandRefused("control characters (such as newlines) are not allowed")
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise CommandRefused(f"the command cannot be split into words: {exc}") from None
    for word in words:
        for meta in _METACHARACTERS:
            if meta in word:
                raise CommandRefused(
                    f"shell metacharacter {meta!r} is not allowed: the command is not run by a shell"
                )
    if words and words[0] == "kubectl":
        words = words[1:]
    if not words:
        raise CommandRefused("empty command")
    return words


class _Parser:
    """pflag's rules, as kubectl applies them, over one command's words."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.verb: str | None = None
        self.i = 0
        self.flags: list[Flag] = []
        self.args: list[str] = []

    def _lookup(self, name: str, table: dict[str, _Spec], spelling: str) -> _Spec:
        if name in DENIED_FLAGS:
            raise _refuse_flag(spelling, name)
        spec = table.get(name)
        if spec is None:
            raise CommandRefused(f"unknown flag {spelling}")
        return spec

    def _next_value(self, spelling: str) -> str:
        if self.i >= len(self.words):
            raise CommandRefused(f"flag {spelling} needs a value")
        value = self.words[self.i]
        self.i += 1
        return value

    def _add(self, spec: _Spec, spelling: str, value: str | None) -> None:
        if not spec.takes_value and value is not None and value.lower() not in _BOOLEANS:
            raise CommandRefused(f"flag {spelling} takes true or false, not {value!r}")
        self.flags.append(Flag(spec.name, value, spelling))

    def _long(self, word: str, table: dict[str, _Spec]) -> None:
        raw, eq, value = word[2:].partition("=")
        spelling = "--" + raw
        spec = self._lookup(_normal(raw), table, spelling)
        if eq:
            self._add(spec, spelling, value)
        elif spec.takes_value:
            self._add(spec, spelling, self._next_value(spelling))
        else:
            self._add(spec, spelling, None)

    def _short(self, word: str, shorts: dict[str, _Spec]) -> None:
        j = 1
        while j < len(word):
            letter = word[j]
            spelling = "-" + letter
            spec = shorts.get(letter)
            if spec is None:
                denied = _DENIED_SHORT.get(letter)
                if letter == "f":  # -f is --follow for logs, --filename elsewhere
                    denied = "follow" if self.verb == "logs" else "filename"
                if denied is not None:
                    raise _refuse_flag(spelling, denied)
                raise CommandRefused(f"unknown flag {spelling}")
            rest = word[j + 1 :]
            if spec.takes_value:
                value = rest[1:] if rest.startswith("=") else rest
                self._add(spec, spelling, value if rest else self._next_value(spelling))
                return
            if rest.startswith("="):
                self._add(spec, spelling, rest[1:])
                return
            self._add(spec, spelling, None)
            j += 1

    def parse(self, table: dict[str, _Spec], *, until_positional: bool) -> str | None:
        """Consume flags (and, unless `until_positional`, positionals) from the current word on.
        Returns the first positional when `until_positional`."""
        shorts = {s.short: s for s in table.values() if s.short}
        while self.i < len(self.words):
            word = self.words[self.i]
            self.i += 1
            if word == "--":
                raise CommandRefused("'--' (end of flags) is not supported here")
            if word.startswith("--"):
                self._long(word, table)
            elif word.startswith("-") and len(word) > 1:
                self._short(word, shorts)
            elif until_positional:
                return word
            else:
                self.args.append(word)
        return None


def _resource_types(verb: str, args: list[str]) -> list[str]:
    """The resource types a command names, lower-cased and without group or version: the first
    argument (a comma list) of verbs that take a type, and the TYPE of every TYPE/NAME argument."""
    raw: list[str] = []
    if verb in _TYPE_ARG_VERBS and args and "/" not in args[0]:
        raw.extend(args[0].split(","))
    raw.extend(arg.split("/", 1)[0] for arg in args if "/" in arg)
    return [t.split(".", 1)[0].strip().lower() for t in raw if t.strip()]


def _check_output(command_flags: list[Flag], types: list[str]) -> None:
    for flag in command_flags:
        if flag.name != "output" or flag.value is None:
            continue
        fmt = flag.value.split("=", 1)[0].strip().lower()
        if fmt in _DENIED_OUTPUT:
            raise CommandRefused(f"output format {fmt!r} is not allowed: {_DENIED_OUTPUT[fmt]}")
        if fmt not in OUTPUT_FORMATS:
            raise CommandRefused(
                f"output format {fmt!r} is not allowed; use one of {', '.join(OUTPUT_FORMATS)}"
            )
        if fmt not in ("wide", "name") and any(t in _SERVICE_ACCOUNT_TYPES for t in types):
            raise CommandRefused(
                f"output format {fmt!r} of service accounts is not allowed: it could print their tokens"
            )


def parse(command: str) -> KubectlCommand:
    """The validated command, or CommandRefused with the reason."""
    words = _words(command)
    parser = _Parser(words)
    # Before the verb only global flags make sense (kubectl reads them as such).
    verb = parser.parse(GLOBAL_FLAGS, until_positional=True)
    if verb is None:
        raise CommandRefused("no verb given; allowed: " + ", ".join(ALLOWED_VERBS))
    if verb not in ALLOWED_VERBS:
        raise CommandRefused(f"verb {verb!r} is not allowed; allowed: {', '.join(ALLOWED_VERBS)}")
    parser.verb = verb
    parser.parse(_flag_table(verb), until_positional=False)
    types = _resource_types(verb, parser.args)
    if any(t in _SECRET_TYPES for t in types):
        raise CommandRefused("secrets are not readable through this route")
    _check_output(parser.flags, types)
    for flag in parser.flags:
        if flag.name == "subresource" and (flag.value or "").lower() not in ("status", "scale"):
            raise CommandRefused("only the status and scale subresources can be read")
    return KubectlCommand(tuple(words), verb, tuple(parser.args), tuple(parser.flags))

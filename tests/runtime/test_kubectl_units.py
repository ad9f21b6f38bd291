"""The pure parts of the admin's kubectl, one at a time: label selectors, AGE, table layout, and the one
flag allow-list shared by the guard and the local runtime's answers.

No server, store or model process: the local answers run on a `Cluster` built here from plain values.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from inferbox.runtime.base import ReplicaInfo
from inferbox.runtime.kubectl import guard
from inferbox.runtime.kubectl.guard import ALLOWED_VERBS, CommandRefused, allowed_flags, parse
from inferbox.runtime.local.kubectl import Answer, Cluster, Namespace, answer
from inferbox.runtime.local.kubectl.printers import human_duration, table
from inferbox.runtime.local.kubectl.selectors import SelectorError, parse_selector
from inferbox.runtime.local.kubectl.verbs import CANNOT_HONOUR

# -- label selectors ---------------------------------------------------------------------------------------

POD = {"app": "iris-predictor", "serving.kserve.io/inferenceservice": "iris", "tier": ""}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=iris-predictor", True),
        ("app==iris-predictor", True),
        ("app = iris-predictor", True),
        ("app=other", False),
        ("missing=x", False),
        ("tier=", True),
        ("app!=other", True),
        ("app!=iris-predictor", False),
        ("missing!=x", True),  # a missing label is not equal to anything
        ("serving.kserve.io/inferenceservice in (iris,other)", True),
        ("serving.kserve.io/inferenceservice in (other, more)", False),
        ("app in ( iris-predictor , x )", True),
        ("missing in (x)", False),
        ("app notin (x,y)", True),
        ("app notin (iris-predictor)", False),
        ("missing notin (x)", True),  # as for !=, a missing label is in no set
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("! app", False),
        ("app=iris-predictor,tier,!missing", True),
        ("app=iris-predictor,missing", False),
        ("serving.kserve.io/inferenceservice in (iris,x),app!=x,!gone", True),
        ("serving.kserve.io/inferenceservice in (iris,x),app=x", False),
    ],
)
def test_selectors_match_as_the_api_server_does(selector: str, matches: bool) -> None:
    assert parse_selector(selector)(POD) is matches


def test_an_empty_selector_matches_objects_without_labels() -> None:
    assert parse_selector("")({}) is True
    assert parse_selector("   ")({}) is True
    assert parse_selector("!a")({}) is True
    assert parse_selector("a")({}) is False


@pytest.mark.parametrize(
    "selector",
    ["a=(b", "a in (b", "a in b", "=b", "a=b=c", "a b", "a in (b,(c))", "a=b,", ",a=b", "a=b,,c=d", ","],
)
def test_malformed_selectors_raise_the_selector_error(selector: str) -> None:
    with pytest.raises(SelectorError, match="unable to parse requirement"):
        parse_selector(selector)


def test_an_empty_requirement_is_named_with_the_whole_selector() -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector("a=b,")
    assert str(caught.value) == 'unable to parse requirement: found "" in "a=b,"'
    with pytest.raises(SelectorError) as caught:
        parse_selector("a=(b")
    assert str(caught.value) == 'unable to parse requirement: "a=(b"'


# -- AGE ---------------------------------------------------------------------------------------------------

MS = 0.001
MINUTE, HOUR, DAY, YEAR = 60, 3600, 86400, 365 * 86400

# apimachinery's own cases (pkg/util/duration: TestHumanDuration and TestHumanDurationBoundaries).
HUMAN_DURATIONS = [
    (1, "1s"),
    (70, "70s"),
    (190, "3m10s"),
    (70 * MINUTE, "70m"),
    (47 * HOUR, "47h"),
    (49 * HOUR, "2d1h"),
    ((8 * 24 + 2) * HOUR, "8d"),
    (367 * DAY, "367d"),
    (2 * YEAR + 25 * HOUR, "2y1d"),
    (8 * YEAR + 2 * HOUR, "8y"),
    (-2, "<invalid>"),
    (-2 + 1e-9, "0s"),
    (0, "0s"),
    (1 - MS, "0s"),
    (59, "59s"),
    (2 * MINUTE - MS, "119s"),
    (2 * MINUTE, "2m"),
    (2 * MINUTE + 1, "2m1s"),
    (10 * MINUTE - MS, "9m59s"),
    (10 * MINUTE, "10m"),
    (10 * MINUTE + 1, "10m"),
    (119 * MINUTE, "119m"),
    (3 * HOUR - MS, "179m"),
    (3 * HOUR, "3h"),
    (3 * HOUR + MINUTE, "3h1m"),
    (8 * HOUR - MS, "7h59m"),
    (8 * HOUR, "8h"),
    (8 * HOUR + 59 * MINUTE, "8h"),
    (2 * DAY - MS, "47h"),
    (2 * DAY, "2d"),
    (2 * DAY + HOUR, "2d1h"),
    (8 * DAY - MS, "7d23h"),
    (8 * DAY, "8d"),
    (8 * DAY + 23 * HOUR, "8d"),
    (2 * YEAR - MS, "729d"),
    (2 * YEAR, "2y"),
    (2 * YEAR + 23 * HOUR + 59 * MINUTE, "2y"),
    (2 * YEAR + DAY - MS, "2y"),
    (2 * YEAR + DAY, "2y1d"),
    (3 * YEAR, "3y"),
    (7 * YEAR, "7y"),
    (8 * YEAR - MS, "7y364d"),
    (8 * YEAR, "8y"),
    (8 * YEAR + 364 * DAY, "8y"),
    (9 * YEAR, "9y"),
]


@pytest.mark.parametrize(("seconds", "expected"), HUMAN_DURATIONS, ids=[e for _, e in HUMAN_DURATIONS])
def test_human_duration_rounds_as_kubectl(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


# -- tables ------------------------------------------------------------------------------------------------


def test_columns_are_padded_to_the_widest_cell_plus_three() -> None:
    out = table(["NAME", "READY", "AGE"], [["iris-predictor-abcde", "1/1", "5m"], ["x", "0/1", "119s"]])
    assert out.splitlines() == [
        "NAME                   READY   AGE",
        "iris-predictor-abcde   1/1     5m",
        "x                      0/1     119s",
    ]


def test_every_column_but_the_last_is_at_least_six_wide() -> None:
    assert table(["A", "B", "C"], [["x", "y", "z"]]).splitlines() == ["A     B     C", "x     y     z"]


def test_the_last_column_is_not_padded_and_trailing_spaces_are_dropped() -> None:
    lines = table(["NAME", "LABELS"], [["a", ""], ["b", "app=x"]]).splitlines()
    assert lines == ["NAME   LABELS", "a", "b      app=x"]


def test_short_rows_no_headers_no_rows_and_indent() -> None:
    assert table(["NAME", "X", "Y"], [["a"]]).splitlines() == ["NAME   X     Y", "a"]
    assert table(None, [["a", "b"], ["long-name", "c"]]) == "a           b\nlong-name   c"
    assert table(None, []) == ""
    assert table(["K", "V"], [["a", "b"]], indent="  ") == "  K     V\n  a     b"


def test_each_cell_starts_where_its_header_does() -> None:
    head = ["NAMESPACE", "NAME", "STATUS", "RESTARTS", "AGE"]
    rows = [
        ["tenant-a", "iris-predictor-x", "Running", "0", "2d"],
        ["b", "y", "CrashLoopBackOff", "12", "1s"],
    ]
    header, *lines = table(head, rows).splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    assert [header[i:].split()[0] for i in starts] == head
    for line, row in zip(lines, rows, strict=True):
        assert [m.start() for m in re.finditer(r"\S+", line)] == starts
        assert line.split() == row


# -- one flag allow-list -----------------------------------------------------------------------------------


def test_a_flag_of_get_is_refused_for_logs() -> None:
    assert "show-labels" in allowed_flags("get") and "show-labels" not in allowed_flags("logs")
    assert parse("get pods --show-labels").enabled("show-labels")
    with pytest.raises(CommandRefused, match="unknown flag --show-labels"):
        parse("logs iris-predictor-abcde --show-labels")
    assert parse("get pods -L app").value("label-columns") == "app"
    with pytest.raises(CommandRefused, match="unknown flag -L"):
        parse("logs iris-predictor-abcde -L app")


def test_global_flags_are_allowed_for_every_verb() -> None:
    for verb in ALLOWED_VERBS:
        assert {"namespace", "request-timeout", "help"} <= allowed_flags(verb)
    with pytest.raises(KeyError):
        allowed_flags("delete")


def test_the_local_answers_name_only_flags_the_guard_allows() -> None:
    """The local view declares what it cannot honour, never which flags exist: each name it gives is a
    flag of that verb in the guard's list."""
    assert set(CANNOT_HONOUR) <= set(ALLOWED_VERBS)
    for verb, names in CANNOT_HONOUR.items():
        assert names, verb
        assert names <= allowed_flags(verb), (verb, sorted(names - allowed_flags(verb)))


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REPLICA = ReplicaInfo(
    name="iris-predictor-abcde",
    namespace="tenant-a",
    model="iris",
    phase="Running",
    ready=True,
    restarts=0,
    started_at=NOW - timedelta(minutes=5),
    labels={"app": "iris-predictor"},
)
CLUSTER = Cluster(
    now=NOW,
    nodes=[],
    namespaces=[Namespace("tenant-a", "Active", NOW - timedelta(days=3))],
    models=[],
    replicas=[REPLICA],
)


class Logs:
    """Stands in for the runtime: every replica printed the same two lines."""

    async def logs(self, namespace: str, name: str, lines: int, replica: str | None = None) -> list[str]:
        return ["first", "second"][-lines:]


def run(command: str) -> Answer:
    return asyncio.run(answer(parse(command), CLUSTER, Logs()))


def test_a_flag_the_guard_allows_but_the_local_view_cannot_honour_is_an_error_answer() -> None:
    assert run("logs iris-predictor-abcde -n tenant-a --since 1h") == Answer(
        "error: flag --since is not supported by the local runtime", 1
    )
    assert run("get pods -n tenant-a --field-selector status.phase=Running").exit_code == 1


def test_the_flags_it_honours_are_answered_from_the_snapshot() -> None:
    assert run("logs iris-predictor-abcde -n tenant-a --tail 1") == Answer("second")
    listing = run("get pods -n tenant-a --show-labels")
    assert listing.exit_code == 0
    assert listing.text.splitlines() == [
        "NAME                   READY   STATUS    RESTARTS   AGE   LABELS",
        "iris-predictor-abcde   1/1     Running   0          5m    app=iris-predictor",
    ]
    assert run("get ns").text.splitlines()[1].split() == ["tenant-a", "Active", "3d"]


# -- layering ----------------------------------------------------------------------------------------------


def imported_by(module: str) -> set[str]:
    code = (
        f"import sys, {module}; print('\\n'.join(sorted(m for m in sys.modules if m.startswith('inferbox'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_the_guard_imports_no_backend() -> None:
    loaded = imported_by(guard.__name__)
    assert not {m for m in loaded if m.startswith("inferbox.runtime.local")}, loaded


def test_the_local_answers_import_neither_the_control_plane_nor_the_api() -> None:
    loaded = imported_by("inferbox.runtime.local.kubectl")
    assert "inferbox.runtime.local.kubectl.verbs" in loaded
    assert not {m for m in loaded if m.split(".")[1:2] in (["control"], ["api"], ["store"])}, loaded

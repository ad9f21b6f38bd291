"""The gateway's reading of a path under a published externalPath: which action, what it costs, where
it goes on the replica, and which paths are not there."""

from __future__ import annotations

import pytest

from inferbox.gateway.actions import Action, Actions, Answer, Kind, NoAction

IRIS = Actions("iris", "traditional")


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        ("", Action(Kind.METADATA, "GET", "/v2/models/iris")),
        ("/", Action(Kind.PROBE, "GET", "/v2/health/live", Answer.V1_LIVE)),
        ("/predict", Action(Kind.INFERENCE, "POST", "/v1/models/iris:predict")),
        ("/infer", Action(Kind.INFERENCE, "POST", "/v2/models/iris/infer")),
        ("/v1/models", Action(Kind.METADATA, "GET", "/v1/models")),
        ("/v1/models/iris", Action(Kind.PROBE, "GET", "/v1/models/iris")),
        ("/v1/models/iris:predict", Action(Kind.INFERENCE, "POST", "/v1/models/iris:predict")),
        ("/v2", Action(Kind.METADATA, "GET", "/v2")),
        ("/v2/health/live", Action(Kind.PROBE, "GET", "/v2/health/live")),
        ("/v2/health/ready", Action(Kind.PROBE, "GET", "/v2/health/ready")),
        ("/v2/models/iris", Action(Kind.METADATA, "GET", "/v2/models/iris")),
        ("/v2/models/iris/ready", Action(Kind.PROBE, "GET", "/v2/models/iris/ready")),
        ("/v2/models/iris/infer", Action(Kind.INFERENCE, "POST", "/v2/models/iris/infer")),
        ("/v2/models/iris/versions/1", Action(Kind.METADATA, "GET", "/v2/models/iris/versions/1")),
        ("/v2/models/iris/versions/3/ready", Action(Kind.PROBE, "GET", "/v2/models/iris/versions/3/ready")),
        (
            "/v2/models/iris/versions/1/infer",
            Action(Kind.INFERENCE, "POST", "/v2/models/iris/versions/1/infer"),
        ),
    ],
)
def test_every_protocol_path_has_its_action(rest: str, expected: Action) -> None:
    assert IRIS.parse(rest) == expected


@pytest.mark.parametrize(
    ("rest", "says"),
    [
        ("/v2/models/other", "No model 'other'"),
        ("/v2/models/other/infer", "No model 'other'"),
        ("/v1/models/other:predict", "No model 'other'"),
        ("/v1/models/iri", "No model 'iri'"),
        ("/v2/models/iris/versions/x/infer", "Nothing at"),
        ("/v2/models/iris/versions/1/metadata", "Nothing at"),
        ("/v1/models/iris:explain", "Nothing at"),
        ("/v2/health", "Nothing at"),
        ("/v3", "Nothing at"),
        ("/predict/", "Nothing at"),
        ("/../predict", "Nothing at"),
        ("/chat/completions", "Nothing at"),
        ("/v2/models/" + "x" * 5000, "No model"),
    ],
)
def test_other_paths_are_not_there(rest: str, says: str) -> None:
    with pytest.raises(NoAction) as missing:
        IRIS.parse(rest)
    assert says in missing.value.details
    assert len(missing.value.details) < 300  # a long path is not echoed whole

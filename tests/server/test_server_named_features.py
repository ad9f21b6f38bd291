"""V1 object rows on a model with named features, as KServe's sklearn server takes them: the keys are
put in the model's `feature_names_in_` order and the pipeline gets a DataFrame with those columns; a
missing or unknown feature is a 400 that names it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import pandas as pd
import pytest
from server_helpers import ServerProcess, assert_error, running_server
from trained import FEATURES, Iris

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def named_server(named_features_dir: Path) -> Iterator[ServerProcess]:
    with running_server("sklearn", named_features_dir, name="my-model") as server:
        yield server


def predict(server: ServerProcess, body: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/models/my-model:predict", json=body, timeout=30)


def test_object_rows_in_any_key_order_equal_the_pipeline_on_a_dataframe(
    named_server: ServerProcess, named_features_dir: Path, iris: Iris
) -> None:
    rows = iris.X[[0, 60, 120], :2]
    frame = pd.DataFrame(rows, columns=list(FEATURES))
    expected = joblib.load(named_features_dir / "model.joblib").predict(frame).tolist()
    shuffled = [{"feature2": float(b), "feature1": float(a)} for a, b in rows]
    response = predict(named_server, {"instances": shuffled})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected}
    # The spec's own example row.
    spec_row = predict(named_server, {"instances": [{"feature1": 1.0, "feature2": 2.0}]})
    assert spec_row.status_code == 200, spec_row.text
    assert len(spec_row.json()["predictions"]) == 1


def test_plain_rows_are_taken_in_the_model_s_feature_order(
    named_server: ServerProcess, named_features_dir: Path, iris: Iris
) -> None:
    rows = iris.X[[5, 55], :2]
    expected = joblib.load(named_features_dir / "model.joblib")
    want = expected.predict(pd.DataFrame(rows, columns=list(FEATURES))).tolist()
    assert predict(named_server, {"instances": rows.tolist()}).json() == {"predictions": want}


@pytest.mark.parametrize(
    ("instances", "fragments"),
    [
        ([{"feature1": 1.0}], ("instance 0 is missing feature 'feature2'", "feature1, feature2")),
        (
            [{"feature1": 1.0, "feature2": 2.0}, {"feature1": 1.0, "feature2": 2.0, "colour": 3}],
            ("instance 1 has unknown feature 'colour'",),
        ),
        ([{"feature1": 1.0, "feature3": 2.0}], ("missing feature 'feature2'",)),
        ([{"feature1": 1.0, "feature2": "tall"}], ()),
    ],
)
def test_missing_and_unknown_features_are_400_naming_them(
    named_server: ServerProcess, instances: list[dict[str, object]], fragments: tuple[str, ...]
) -> None:
    assert_error(predict(named_server, {"instances": instances}), 400, *fragments)
    # The replica keeps serving.
    assert predict(named_server, {"instances": [{"feature1": 1.0, "feature2": 2.0}]}).status_code == 200

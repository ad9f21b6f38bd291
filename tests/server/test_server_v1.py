"""KServe V1 protocol against real replicas: predictions equal the framework's own, errors are JSON."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from server_helpers import ServerProcess, assert_error
from trained import Iris

pytestmark = pytest.mark.timeout(120)


def predict(server: ServerProcess, body: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/models/iris:predict", json=body)


def assert_still_serving(server: ServerProcess) -> None:
    response = predict(server, {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert response.status_code == 200, response.text


def test_liveness_at_the_root(sklearn_server: ServerProcess) -> None:
    """KServe's V1 liveness probe: `GET /` answers {"status": "alive"}; other methods are 405."""
    response = httpx.get(f"{sklearn_server.base_url}/")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    assert_error(httpx.post(f"{sklearn_server.base_url}/"), 405, "use GET")


def test_models_list_and_readiness(sklearn_server: ServerProcess) -> None:
    assert httpx.get(f"{sklearn_server.base_url}/v1/models").json() == {"models": ["iris"]}
    response = httpx.get(f"{sklearn_server.base_url}/v1/models/iris")
    assert response.status_code == 200
    assert response.json() == {"name": "iris", "ready": True}


def test_sklearn_predictions_equal_estimator(
    sklearn_server: ServerProcess, sklearn_dir: Path, iris: Iris
) -> None:
    import joblib

    expected = joblib.load(sklearn_dir / "model.joblib").predict(iris.X)
    response = predict(sklearn_server, {"instances": iris.X.tolist()})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert predictions == expected.tolist()
    assert all(type(p) is int for p in predictions)  # int64 labels stay JSON ints
    # One row at a time gives the same answers.
    for row in (0, 60, 120):
        single = predict(sklearn_server, {"instances": [iris.X[row].tolist()]})
        assert single.json() == {"predictions": [int(expected[row])]}


def test_inputs_is_a_synonym_of_instances(sklearn_server: ServerProcess, iris: Iris) -> None:
    rows = iris.X[[0, 75, 149]].tolist()
    by_instances = predict(sklearn_server, {"instances": rows}).json()
    by_inputs = predict(sklearn_server, {"inputs": rows}).json()
    assert by_instances == by_inputs
    assert len(by_inputs["predictions"]) == 3


def test_object_instances_use_key_order(sklearn_server: ServerProcess, iris: Iris) -> None:
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = iris.X[[10, 70, 140]]
    objects = [dict(zip(names, row.tolist(), strict=True)) for row in rows]
    expected = predict(sklearn_server, {"instances": rows.tolist()}).json()
    assert predict(sklearn_server, {"instances": objects}).json() == expected
    # KServe's DataFrame form: one object whose values are columns.
    columns = {name: rows[:, i].tolist() for i, name in enumerate(names)}
    assert predict(sklearn_server, {"instances": [columns]}).json() == expected
    assert predict(sklearn_server, {"inputs": columns}).json() == expected


def test_xgboost_returns_booster_predict(
    xgboost_server: ServerProcess, xgboost_dir: Path, iris: Iris
) -> None:
    import xgboost

    booster = xgboost.Booster(model_file=str(xgboost_dir / "model.json"))
    expected = booster.predict(xgboost.DMatrix(iris.X))  # [150, 3] probabilities, as KServe's xgbserver
    response = predict(xgboost_server, {"instances": iris.X.tolist()})
    assert response.status_code == 200, response.text
    got = np.asarray(response.json()["predictions"], dtype=np.float32)
    assert got.shape == (150, 3)
    np.testing.assert_array_equal(got, expected)


def test_lightgbm_returns_booster_predict(
    lightgbm_server: ServerProcess, lightgbm_dir: Path, iris: Iris
) -> None:
    import lightgbm

    expected = lightgbm.Booster(model_file=str(lightgbm_dir / "model.txt")).predict(iris.X)
    response = predict(lightgbm_server, {"instances": iris.X.tolist()})
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(np.asarray(response.json()["predictions"]), expected)


def test_onnx_returns_first_output(onnx_server: ServerProcess, onnx_dir: Path, iris: Iris) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    labels = session.run(None, {"input": iris.X.astype(np.float32)})[0]
    response = predict(onnx_server, {"instances": iris.X.tolist()})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == labels.tolist()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, '"instances"'),
        ({"instance": [[1, 2, 3, 4]]}, '"instances"'),
        ({"instances": []}, "non-empty"),
        ({"instances": "1,2,3,4"}, "non-empty list"),
        ({"instances": [["a", "b", "c", "d"]]}, "could not convert string to float: 'a'"),  # sklearn's own
        ({"instances": [["a", "b", "c"]]}, "got 3"),
        ({"instances": [[1, 2, 3, None]]}, "numbers"),
        ({"instances": [[1, 2, 3, 4, 5]]}, "expected 4 feature values per row, got 5"),
        ({"instances": [[1, 2, 3]]}, "got 3"),
        ({"instances": [1, 2, 3, 4]}, "rows of 4 feature values"),
        ({"instances": [[1, 2, 3, 4], [1, 2]]}, "same length"),
        ({"instances": [{"a": 1}, {"b": 2}]}, "keys"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, "/v2/"),
    ],
)
def test_bad_requests_are_400(sklearn_server: ServerProcess, body: object, fragment: str) -> None:
    assert_error(predict(sklearn_server, body), 400, fragment)
    assert_still_serving(sklearn_server)


def test_malformed_json_is_400(sklearn_server: ServerProcess) -> None:
    for content in (b"{not json", b"", b"[1, 2]", b"\xff\xfe"):
        response = httpx.post(f"{sklearn_server.base_url}/v1/models/iris:predict", content=content)
        assert_error(response, 400)
        assert_still_serving(sklearn_server)


def test_wrong_width_reaches_no_framework_on_every_framework(
    xgboost_server: ServerProcess, lightgbm_server: ServerProcess, onnx_server: ServerProcess
) -> None:
    for server in (xgboost_server, lightgbm_server, onnx_server):
        assert_error(predict(server, {"instances": [[1, 2, 3, 4, 5]]}), 400, "5")
        assert_error(predict(server, {"instances": [["x", 2, 3, 4]]}), 400, "numbers")
        assert_still_serving(server)


def test_unknown_model_is_404(sklearn_server: ServerProcess) -> None:
    base = sklearn_server.base_url
    assert_error(
        httpx.post(f"{base}/v1/models/other:predict", json={"instances": [[1, 2, 3, 4]]}), 404, "'other'"
    )
    assert_error(httpx.get(f"{base}/v1/models/other"), 404, "not found")
    assert_error(httpx.get(f"{base}/v1/models/other:predict"), 404, "'other'")
    assert_still_serving(sklearn_server)


def test_unknown_route_is_404_and_wrong_method_405(sklearn_server: ServerProcess) -> None:
    base = sklearn_server.base_url
    assert_error(httpx.get(f"{base}/nope"), 404, "/nope")
    assert_error(httpx.post(f"{base}/v1/models/iris:explain", json={}), 404)
    response = httpx.get(f"{base}/v1/models/iris:predict")
    assert_error(response, 405, "POST")
    assert response.headers["allow"] == "POST"
    assert_error(httpx.delete(f"{base}/v1/models"), 405)
    assert_still_serving(sklearn_server)

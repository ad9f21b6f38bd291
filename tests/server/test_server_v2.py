"""Open Inference Protocol (V2) against real replicas: metadata, health, infer, datatype checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from server_helpers import ServerProcess, assert_error
from trained import Iris

pytestmark = pytest.mark.timeout(120)


def infer(server: ServerProcess, body: object, path: str = "/v2/models/iris/infer") -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body)


def tensor(data: Any, shape: list[int], datatype: str = "FP64", name: str = "input-0") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def assert_still_serving(server: ServerProcess) -> None:
    response = infer(server, {"inputs": [tensor([5.1, 3.5, 1.4, 0.2], [1, 4])]})
    assert response.status_code == 200, response.text


def test_server_metadata_and_health(sklearn_server: ServerProcess) -> None:
    base = sklearn_server.base_url
    metadata = httpx.get(f"{base}/v2").json()
    assert metadata["name"] == "inferbox"
    assert isinstance(metadata["version"], str)
    assert metadata["extensions"] == ["binary_tensor_data"]
    assert httpx.get(f"{base}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{base}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{base}/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    assert httpx.get(f"{base}/v2/models/iris/versions/1/ready").status_code == 200


@pytest.mark.parametrize(
    ("server_fixture", "platform", "inputs", "outputs"),
    [
        (
            "sklearn_server",
            "sklearn",
            [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
            [{"name": "output-0", "datatype": "INT64", "shape": [-1]}],
        ),
        (
            "xgboost_server",
            "xgboost",
            [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}],
            [{"name": "output-0", "datatype": "FP32", "shape": [-1, 3]}],
        ),
        (
            "lightgbm_server",
            "lightgbm",
            [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
            [{"name": "output-0", "datatype": "FP64", "shape": [-1, 3]}],
        ),
        (
            "onnx_server",
            "onnxruntime_onnx",
            [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            [
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            ],
        ),
    ],
)
def test_model_metadata(
    request: pytest.FixtureRequest,
    server_fixture: str,
    platform: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> None:
    server: ServerProcess = request.getfixturevalue(server_fixture)
    metadata = httpx.get(f"{server.base_url}/v2/models/iris").json()
    assert metadata == {
        "name": "iris",
        "versions": ["1"],
        "platform": platform,
        "inputs": inputs,
        "outputs": outputs,
    }


def test_sklearn_infer_equals_estimator(sklearn_server: ServerProcess, sklearn_dir: Path, iris: Iris) -> None:
    import joblib

    expected = joblib.load(sklearn_dir / "model.joblib").predict(iris.X)
    flat = infer(sklearn_server, {"id": "req-1", "inputs": [tensor(iris.X.ravel().tolist(), [150, 4])]})
    assert flat.status_code == 200, flat.text
    body = flat.json()
    assert body == {
        "model_name": "iris",
        "id": "req-1",
        "outputs": [{"name": "output-0", "shape": [150], "datatype": "INT64", "data": expected.tolist()}],
    }
    nested = infer(sklearn_server, {"id": "req-2", "inputs": [tensor(iris.X.tolist(), [150, 4])]}).json()
    assert nested["outputs"] == body["outputs"]


def test_id_is_generated_when_absent(sklearn_server: ServerProcess) -> None:
    body = infer(sklearn_server, {"inputs": [tensor([5.1, 3.5, 1.4, 0.2], [1, 4])]}).json()
    assert isinstance(body["id"], str) and body["id"]


def test_integer_and_single_precision_inputs(sklearn_server: ServerProcess, sklearn_dir: Path) -> None:
    import joblib

    estimator = joblib.load(sklearn_dir / "model.joblib")
    rows = [[5, 3, 1, 0], [7, 3, 5, 2]]
    expected = estimator.predict(np.asarray(rows, dtype=np.float64)).tolist()
    for datatype in ("INT32", "INT64", "UINT8", "FP32", "FP16"):
        response = infer(sklearn_server, {"inputs": [tensor(rows, [2, 4], datatype)]})
        assert response.status_code == 200, (datatype, response.text)
        assert response.json()["outputs"][0]["data"] == expected


def test_columns_are_stacked(sklearn_server: ServerProcess, sklearn_dir: Path, iris: Iris) -> None:
    import joblib

    rows = iris.X[[3, 77, 111]]
    expected = joblib.load(sklearn_dir / "model.joblib").predict(rows).tolist()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    as_vectors = [tensor(rows[:, i].tolist(), [3], name=name) for i, name in enumerate(names)]
    as_columns = [tensor(rows[:, i].tolist(), [3, 1], name=name) for i, name in enumerate(names)]
    for inputs in (as_vectors, as_columns):
        response = infer(sklearn_server, {"inputs": inputs})
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == expected


def test_xgboost_and_lightgbm_infer(
    xgboost_server: ServerProcess,
    lightgbm_server: ServerProcess,
    xgboost_dir: Path,
    lightgbm_dir: Path,
    iris: Iris,
) -> None:
    import lightgbm
    import xgboost

    xgb_expected = xgboost.Booster(model_file=str(xgboost_dir / "model.json")).predict(
        xgboost.DMatrix(iris.X)
    )
    response = infer(xgboost_server, {"inputs": [tensor(iris.X.ravel().tolist(), [150, 4])]})
    output = response.json()["outputs"][0]
    assert (output["shape"], output["datatype"]) == ([150, 3], "FP32")
    np.testing.assert_array_equal(np.asarray(output["data"], dtype=np.float32).reshape(150, 3), xgb_expected)

    lgb_expected = lightgbm.Booster(model_file=str(lightgbm_dir / "model.txt")).predict(iris.X)
    response = infer(lightgbm_server, {"inputs": [tensor(iris.X.ravel().tolist(), [150, 4])]})
    output = response.json()["outputs"][0]
    assert (output["shape"], output["datatype"]) == ([150, 3], "FP64")
    np.testing.assert_array_equal(np.asarray(output["data"]).reshape(150, 3), lgb_expected)


def test_onnx_returns_all_outputs_or_those_asked_for(
    onnx_server: ServerProcess, onnx_dir: Path, iris: Iris
) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"input": iris.X.astype(np.float32)})
    data = iris.X.astype(np.float32).ravel().tolist()
    body = infer(onnx_server, {"inputs": [tensor(data, [150, 4], "FP32", name="input")]}).json()
    by_name = {o["name"]: o for o in body["outputs"]}
    assert list(by_name) == ["label", "probabilities"]
    assert by_name["label"]["data"] == labels.tolist()
    assert by_name["probabilities"]["shape"] == [150, 3]
    np.testing.assert_array_equal(
        np.asarray(by_name["probabilities"]["data"], dtype=np.float32), probabilities.ravel()
    )

    only = infer(
        onnx_server,
        {"inputs": [tensor(data, [150, 4], "FP32", name="input")], "outputs": [{"name": "probabilities"}]},
    ).json()
    assert [o["name"] for o in only["outputs"]] == ["probabilities"]


def test_versioned_paths(sklearn_server: ServerProcess) -> None:
    base = sklearn_server.base_url
    response = infer(
        sklearn_server, {"inputs": [tensor([5.1, 3.5, 1.4, 0.2], [1, 4])]}, "/v2/models/iris/versions/1/infer"
    )
    assert response.status_code == 200
    assert httpx.get(f"{base}/v2/models/iris/versions/1").json()["name"] == "iris"
    assert_error(httpx.get(f"{base}/v2/models/iris/versions/2/ready"), 404, "version")


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ([tensor([1.5, 2, 3, 4], [1, 4], "INT32")], "non-integer"),
        ([tensor(["abc", 2, 3, 4], [1, 4], "FP32")], "not numbers"),
        ([tensor([300, 2, 3, 4], [1, 4], "UINT8")], "300 is out of range for UINT8"),
        ([tensor([-1, 2, 3, 4], [1, 4], "UINT16")], "out of range"),
        ([tensor([2**40, 2, 3, 4], [1, 4], "INT32")], "out of range"),
        ([tensor([1e300, 2, 3, 4], [1, 4], "FP32")], "out of range for FP32"),
        ([tensor([1, 0, 1, 1], [1, 4], "BOOL")], "true/false"),
        ([tensor([1, 2, 3], [1, 4])], "needs 4 values"),
        ([tensor([1, 2, 3, 4, 5], [1, 5])], "expected 4 feature values per row, got 5"),
        ([tensor([[1, 2], [3]], [1, 3])], "ragged"),
        ([tensor([1, 2, 3, 4], [1, 4], "FLOAT")], "datatype 'FLOAT'"),
        ([tensor([1, 2, 3, 4], [1, -4])], "non-negative"),
        ([{"name": "x", "shape": [1, 4], "datatype": "FP32"}], '"data"'),
        ([{"shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], '"name"'),
        ([tensor(["a", "b", "c", "d"], [1, 4], "BYTES")], "could not convert string to float"),  # sklearn's
        ([tensor([1, 2, 3, 4], [1, 4]), tensor([1, 2, 3, 4], [1, 4], name="b")], "one column"),
        ([tensor([1, 2], [2], name="a"), tensor([1], [1], name="b")], "same number of rows"),
        ([tensor([1, 2, 3, 4], [1, 4]), tensor([1, 2, 3, 4], [1, 4])], "twice"),
        ([tensor([], [0, 4])], "no rows"),
        ([], '"inputs"'),
        ("x", '"inputs"'),
    ],
)
def test_bad_tensors_are_400(sklearn_server: ServerProcess, inputs: object, fragment: str) -> None:
    assert_error(infer(sklearn_server, {"inputs": inputs}), 400, fragment)
    assert_still_serving(sklearn_server)


def test_bad_request_fields_are_400(sklearn_server: ServerProcess) -> None:
    good = [tensor([5.1, 3.5, 1.4, 0.2], [1, 4])]
    assert_error(infer(sklearn_server, {"inputs": good, "id": 5}), 400, '"id"')
    assert_error(infer(sklearn_server, {"inputs": good, "outputs": [{"name": "nope"}]}), 400, "'nope'")
    assert_error(infer(sklearn_server, {"inputs": good, "outputs": "all"}), 400, '"outputs"')
    assert_error(infer(sklearn_server, {}), 400, '"inputs"')
    response = httpx.post(f"{sklearn_server.base_url}/v2/models/iris/infer", content=b'{"inputs": [')
    assert_error(response, 400, "malformed JSON")
    assert_still_serving(sklearn_server)


def test_unknown_model_route_and_method(sklearn_server: ServerProcess) -> None:
    base = sklearn_server.base_url
    good = {"inputs": [tensor([5.1, 3.5, 1.4, 0.2], [1, 4])]}
    assert_error(infer(sklearn_server, good, "/v2/models/other/infer"), 404, "'other'")
    assert_error(httpx.get(f"{base}/v2/models/other"), 404, "'other'")
    assert_error(httpx.get(f"{base}/v2/models/other/ready"), 404, "'other'")
    assert_error(httpx.get(f"{base}/v2/models/iris/nope"), 404)
    assert_error(httpx.get(f"{base}/v2/models/iris/infer"), 405, "POST")
    assert_error(httpx.post(f"{base}/v2/health/ready"), 405, "GET")
    assert_still_serving(sklearn_server)

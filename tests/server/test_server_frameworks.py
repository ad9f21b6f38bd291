"""Framework registry, model-file discovery and the loaders, in-process on real model files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from hiding import env_hiding
from trained import Iris

from inferbox.server.errors import InferenceError, ModelLoadError, one_line
from inferbox.server.frameworks import FRAMEWORKS, find_model_file, load_model, missing_extra

pytestmark = pytest.mark.timeout(60)


def test_registry_lists_the_frameworks() -> None:
    assert set(FRAMEWORKS) == {"sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "huggingface"}
    assert FRAMEWORKS["sklearn"].extensions == (".joblib", ".pkl", ".pickle")


def test_missing_extra() -> None:
    # The test extra installs every framework's packages, the optional ones included.
    for framework in FRAMEWORKS:
        assert missing_extra(framework) is None
    with pytest.raises(ModelLoadError, match="unknown framework 'caffe'"):
        missing_extra("caffe")


def _missing_extras_without(*packages: str) -> dict[str, str | None]:
    """``missing_extra`` of every framework, in a process that cannot see ``packages``."""
    code = (
        "import json; from inferbox.server.frameworks import FRAMEWORKS, missing_extra; "
        "print(json.dumps({name: missing_extra(name) for name in FRAMEWORKS}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env_hiding(*packages)
    )
    return orjson.loads(result.stdout)  # type: ignore[no-any-return]


def test_missing_extra_names_the_extra_to_install() -> None:
    pytorch = "framework 'pytorch' needs the optional extra: pip install 'inferbox[pytorch]'"
    huggingface = "framework 'huggingface' needs the optional extra: pip install 'inferbox[huggingface]'"
    always = {name: None for name in ("sklearn", "xgboost", "lightgbm", "onnx")}
    # Hugging Face models run on torch, so without torch both frameworks are missing.
    assert _missing_extras_without("torch") == {**always, "pytorch": pytorch, "huggingface": huggingface}
    assert _missing_extras_without("transformers") == {**always, "pytorch": None, "huggingface": huggingface}


def test_importing_the_registry_imports_no_framework() -> None:
    code = (
        "import sys; import inferbox.server.frameworks, inferbox.server.app, inferbox.server.cli; "
        "heavy = {'sklearn', 'xgboost', 'lightgbm', 'onnxruntime', 'torch', 'transformers'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_loading_xgboost_does_not_import_sklearn(xgboost_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from inferbox.server.frameworks import load_model; "
        f"load_model('xgboost', Path({str(xgboost_dir / 'model.json')!r})); "
        "before = 'sklearn' in sys.modules; import sklearn; print(before, 'sklearn' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Loading left sklearn out; the blocked import is undone afterwards: sklearn can still be imported.
    assert result.stdout.split() == ["False", "True"]


class TestFindModelFile:
    def test_single_file_in_directory(self, tmp_path: Path) -> None:
        (tmp_path / "model.joblib").write_bytes(b"")
        (tmp_path / "notes.txt").write_text("")
        assert find_model_file("sklearn", tmp_path) == tmp_path / "model.joblib"

    def test_the_file_itself(self, tmp_path: Path) -> None:
        (tmp_path / "m.onnx").write_bytes(b"")
        assert find_model_file("onnx", tmp_path / "m.onnx") == tmp_path / "m.onnx"

    def test_top_level_wins_over_nested(self, tmp_path: Path) -> None:
        (tmp_path / "model.json").write_text("{}")
        (tmp_path / "old").mkdir()
        (tmp_path / "old" / "model.json").write_text("{}")
        assert find_model_file("xgboost", tmp_path) == tmp_path / "model.json"

    def test_nested_when_top_level_has_none(self, tmp_path: Path) -> None:
        (tmp_path / "1" / "artifacts").mkdir(parents=True)
        (tmp_path / "1" / "artifacts" / "model.txt").write_text("")
        (tmp_path / ".cache").mkdir()
        (tmp_path / ".cache" / "other.txt").write_text("")  # hidden directories are not searched
        assert find_model_file("lightgbm", tmp_path) == tmp_path / "1" / "artifacts" / "model.txt"

    def test_two_candidates_are_named(self, tmp_path: Path) -> None:
        (tmp_path / "a.pkl").write_bytes(b"")
        (tmp_path / "b.pickle").write_bytes(b"")
        with pytest.raises(ModelLoadError, match=r"more than one model file .*: a\.pkl, b\.pickle"):
            find_model_file("sklearn", tmp_path)

    def test_none(self, tmp_path: Path) -> None:
        with pytest.raises(ModelLoadError, match=r"no model file for framework 'onnx' .*\.onnx"):
            find_model_file("onnx", tmp_path)

    def test_missing_path(self, tmp_path: Path) -> None:
        with pytest.raises(ModelLoadError, match="does not exist"):
            find_model_file("sklearn", tmp_path / "gone")

    def test_huggingface_directory(self, tmp_path: Path) -> None:
        (tmp_path / "snapshot").mkdir()
        (tmp_path / "snapshot" / "config.json").write_text("{}")
        assert find_model_file("huggingface", tmp_path) == tmp_path / "snapshot"
        assert find_model_file("huggingface", tmp_path / "snapshot" / "config.json") == tmp_path / "snapshot"


def test_sklearn_loader(sklearn_dir: Path, iris: Iris) -> None:
    import joblib

    model = load_model("sklearn", sklearn_dir / "model.joblib")
    assert model.n_features == 4
    assert model.feature_names is None
    x = model.prepare(iris.X[:5])
    np.testing.assert_array_equal(
        model.predict(x)[0], joblib.load(sklearn_dir / "model.joblib").predict(iris.X[:5])
    )
    with pytest.raises(InferenceError, match="expected 4 feature values per row, got 3"):
        model.prepare(iris.X[:5, :3])


def test_sklearn_feature_names_order_object_instances(tmp_path: Path, iris: Iris) -> None:
    """An estimator fitted with named features takes V1 objects by name, in any key order."""
    import joblib
    from sklearn.tree import DecisionTreeClassifier

    from inferbox.server.protocol import v1

    names = ["sl", "sw", "pl", "pw"]
    estimator = DecisionTreeClassifier(random_state=0).fit(iris.X, iris.y)
    # What fitting on a DataFrame with these columns records (pandas is not a dependency here).
    estimator.feature_names_in_ = np.asarray(names, dtype=object)
    joblib.dump(estimator, tmp_path / "model.joblib")
    model = load_model("sklearn", tmp_path / "model.joblib")
    assert model.feature_names == tuple(names)
    row = iris.X[120]
    shuffled = {"pw": row[3], "sl": row[0], "pl": row[2], "sw": row[1]}
    x = v1.decode(orjson.dumps({"instances": [shuffled]}, option=orjson.OPT_SERIALIZE_NUMPY), model)
    np.testing.assert_array_equal(x, row[None, :])
    features = r"missing feature 'sl' \(the model's features: sl, sw, pl, pw\)"
    with pytest.raises(InferenceError, match=features):
        v1.decode(b'{"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]}', model)


def test_xgboost_loader_matches_dmatrix_predict(xgboost_dir: Path, iris: Iris) -> None:
    import xgboost

    model = load_model("xgboost", xgboost_dir / "model.json")
    assert (model.n_features, model.outputs[0].shape) == (4, (-1, 3))
    booster = xgboost.Booster(model_file=str(xgboost_dir / "model.json"))
    np.testing.assert_array_equal(
        model.predict(model.prepare(iris.X))[0], booster.predict(xgboost.DMatrix(iris.X))
    )


def test_lightgbm_loader(lightgbm_dir: Path, iris: Iris) -> None:
    import lightgbm

    model = load_model("lightgbm", lightgbm_dir / "model.txt")
    assert (model.n_features, model.feature_names, model.outputs[0].shape) == (4, None, (-1, 3))
    expected = lightgbm.Booster(model_file=str(lightgbm_dir / "model.txt")).predict(iris.X)
    np.testing.assert_array_equal(model.predict(model.prepare(iris.X))[0], expected)


def test_onnx_loader(onnx_dir: Path, iris: Iris) -> None:
    model = load_model("onnx", onnx_dir / "model.onnx")
    assert model.n_features == 4 and model.tabular and model.batchable
    assert model.output_names == ["label", "probabilities"]
    x = model.prepare(iris.X)
    assert x.dtype == np.float32
    labels, probabilities = model.predict(x)
    assert labels.shape == (150,) and probabilities.shape == (150, 3)
    with pytest.raises(InferenceError, match=r"has shape \[-1, 4\], got an array of shape \[2, 5\]"):
        model.prepare(np.zeros((2, 5)))


def test_framework_errors_become_one_line_messages(xgboost_dir: Path) -> None:
    model = load_model("xgboost", xgboost_dir / "model.json")
    try:
        model.predict(np.zeros((1, 7), dtype=np.float32))  # bypassing prepare's width check
    except Exception as exc:
        error = model.error_for(exc)
    else:
        pytest.fail("xgboost accepted 7 features for a 4-feature model")
    assert error.status == 400
    assert "\n" not in error.message and not error.message.startswith("[")
    assert one_line(RuntimeError("first\nStack trace:\n  [bt] (0) frame")) == "first"
    assert one_line(RuntimeError("")) == "RuntimeError"
    assert len(one_line(ValueError("x" * 5000))) == 500


def test_sklearn_pipeline_with_categorical_column(tmp_path: Path) -> None:
    """Rows mixing strings and numbers reach a pipeline that takes them, numbers kept as numbers."""
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from inferbox.server.protocol import v1

    rng = np.random.default_rng(0)
    colors = rng.choice(["red", "green", "blue"], size=200)
    sizes = rng.normal(size=200)
    X = np.empty((200, 2), dtype=object)
    X[:, 0], X[:, 1] = colors, sizes
    y = (colors == "red") ^ (sizes > 0)
    encode = ColumnTransformer([("color", OneHotEncoder(), [0])], remainder="passthrough")
    pipeline = make_pipeline(encode, LogisticRegression()).fit(X, y)
    joblib.dump(pipeline, tmp_path / "model.joblib")
    model = load_model("sklearn", tmp_path / "model.joblib")
    assert model.n_features == 2

    rows = [["red", 1.5], ["blue", -0.25]]
    expected = pipeline.predict(np.array(rows, dtype=object)).tolist()
    as_rows = v1.decode(orjson.dumps({"instances": rows}), model)
    assert as_rows.dtype == object and as_rows[0, 1] == 1.5
    assert model.predict(as_rows)[0].tolist() == expected
    objects = [{"color": c, "size": s} for c, s in rows]
    assert model.predict(v1.decode(orjson.dumps({"instances": objects}), model))[0].tolist() == expected
    with pytest.raises(InferenceError, match="expected 2 feature values per row, got 3"):
        v1.decode(orjson.dumps({"instances": [["red", 1.5, 2]]}), model)


def test_optional_framework_modules_import_without_their_libraries(tmp_path: Path) -> None:
    """The pytorch and huggingface loaders import torch/transformers only when loading."""
    from inferbox.server.frameworks import huggingface, pytorch

    assert pytorch.TorchScriptModel.platform == "pytorch_torchscript"
    config = tmp_path / "config.json"
    config.write_text('{"architectures": ["DistilBertForSequenceClassification"]}')
    assert huggingface.task_from_config(tmp_path) == "text-classification"
    config.write_text('{"architectures": ["GPT2LMHeadModel"]}')
    assert huggingface.task_from_config(tmp_path) == "text-generation"
    config.write_text('{"architectures": ["BertModel"]}')  # a bare encoder names no task
    assert huggingface.task_from_config(tmp_path) is None
    config.write_text("not json")
    assert huggingface.task_from_config(tmp_path) is None

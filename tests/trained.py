"""Real models, trained on iris once per test session, in every framework the base install serves.

Loaded as a pytest plugin by tests/conftest.py, so every test folder shares them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass(frozen=True)
class Iris:
    """The iris data set: `X` float64 [150, 4], `y` int64 [150]."""

    X: np.ndarray
    y: np.ndarray


@pytest.fixture(scope="session")
def iris() -> Iris:
    from sklearn import datasets

    X, y = datasets.load_iris(return_X_y=True)
    return Iris(np.ascontiguousarray(X, dtype=np.float64), y.astype(np.int64))


@pytest.fixture(scope="session")
def sklearn_dir(tmp_path_factory: pytest.TempPathFactory, iris: Iris) -> Path:
    """KServe's sklearn example: `svm.SVC(gamma="scale")` on iris, as `model.joblib`."""
    import joblib
    from sklearn import svm

    directory = tmp_path_factory.mktemp("sklearn")
    joblib.dump(svm.SVC(gamma="scale").fit(iris.X, iris.y), directory / "model.joblib")
    return directory


@pytest.fixture(scope="session")
def xgboost_dir(tmp_path_factory: pytest.TempPathFactory, iris: Iris) -> Path:
    import xgboost

    directory = tmp_path_factory.mktemp("xgboost")
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1)
    model.fit(iris.X, iris.y)
    model.save_model(directory / "model.json")
    return directory


@pytest.fixture(scope="session")
def lightgbm_dir(tmp_path_factory: pytest.TempPathFactory, iris: Iris) -> Path:
    import lightgbm

    directory = tmp_path_factory.mktemp("lightgbm")
    params = {
        "objective": "multiclass",
        "num_class": 3,
        "num_threads": 1,
        "verbose": -1,
        "min_data_in_leaf": 5,
    }
    booster = lightgbm.train(params, lightgbm.Dataset(iris.X, label=iris.y), num_boost_round=10)
    booster.save_model(str(directory / "model.txt"))
    return directory


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory, iris: Iris) -> Path:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    directory = tmp_path_factory.mktemp("onnx")
    model = LogisticRegression(max_iter=500).fit(iris.X, iris.y)
    # zipmap=False: probabilities as a plain [N, 3] tensor rather than a list of dicts.
    onnx_model = convert_sklearn(
        model, initial_types=[("input", FloatTensorType([None, 4]))], options={id(model): {"zipmap": False}}
    )
    (directory / "model.onnx").write_bytes(onnx_model.SerializeToString())
    return directory


FEATURES = ("feature1", "feature2")


@pytest.fixture(scope="session")
def named_features_dir(tmp_path_factory: pytest.TempPathFactory, iris: Iris) -> Path:
    """The spec's example model: a scikit-learn pipeline fitted on a DataFrame with the columns
    `feature1` and `feature2` (iris's sepal length and width), which selects its columns by name, so
    it works only when it is given a DataFrame with those columns."""
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = pd.DataFrame(iris.X[:, :2], columns=list(FEATURES))
    scale = ColumnTransformer([("scale", StandardScaler(), list(FEATURES))])
    pipeline = make_pipeline(scale, LogisticRegression(max_iter=500)).fit(frame, iris.y)
    directory = tmp_path_factory.mktemp("named-features")
    joblib.dump(pipeline, directory / "model.joblib")
    return directory

"""XGBoost boosters (``.json``, ``.ubj``, ``.bst``), loaded as a native ``xgboost.Booster``.

Predictions are what KServe's xgbserver returns: ``booster.predict(DMatrix(rows))``. For a classifier
saved through the sklearn API (``XGBClassifier.save_model``) that is the booster's raw output: class
probabilities of shape ``[N, classes]`` for ``multi:softprob``, the positive-class probability for
``binary:logistic``, not class labels. ``inplace_predict`` is used because it gives the same values
without building a DMatrix per call.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inferbox.server.frameworks._imports import import_without_sklearn
from inferbox.server.model import Model, TensorSpec


class XGBoostModel(Model):
    platform = "xgboost"
    input_dtype = np.dtype(np.float32)  # what a DMatrix stores; casting early keeps batch-mates uniform

    def __init__(self, booster: object, error_type: type[BaseException]) -> None:
        self._booster = booster
        self.bad_input_errors = (*Model.bad_input_errors, error_type)
        self.n_features = int(booster.num_features())  # type: ignore[attr-defined]
        names = booster.feature_names  # type: ignore[attr-defined]
        self.feature_names = tuple(names) if names else None
        super().__init__(
            inputs=[TensorSpec("input-0", "FP32", (-1, self.n_features))],
            outputs=[TensorSpec("output-0", "FP32", _output_shape(booster))],
        )

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(self._booster.inplace_predict(x, validate_features=False))]  # type: ignore[attr-defined]


def _output_shape(booster: object) -> tuple[int, ...]:
    try:
        learner = json.loads(booster.save_config())["learner"]  # type: ignore[attr-defined]
        classes = int(learner["learner_model_param"]["num_class"])
        if learner["objective"]["name"] == "multi:softprob" and classes > 1:
            return (-1, classes)
    except (KeyError, ValueError, TypeError):
        pass
    return (-1,)


def load(path: Path, *, task: str | None = None) -> XGBoostModel:
    xgb = import_without_sklearn("xgboost")
    # One thread: the replica has one predict worker, and OpenMP fan-out costs more than it saves on
    # the small batches an online server sees (KServe's xgbserver defaults to nthread=1 as well).
    booster = xgb.Booster(params={"nthread": 1}, model_file=str(path))
    return XGBoostModel(booster, xgb.core.XGBoostError)

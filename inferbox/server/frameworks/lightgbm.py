"""LightGBM boosters saved as text (``.txt``, ``.lgb``), predicted with ``Booster.predict`` as in
KServe's lgbserver: for a multiclass model that is class probabilities of shape ``[N, classes]``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inferbox.server.frameworks._imports import import_without_sklearn
from inferbox.server.model import Model, TensorSpec


class LightGBMModel(Model):
    platform = "lightgbm"

    def __init__(self, booster: object, error_type: type[BaseException]) -> None:
        self._booster = booster
        self.bad_input_errors = (*Model.bad_input_errors, error_type)
        self.n_features = int(booster.num_feature())  # type: ignore[attr-defined]
        names = list(booster.feature_name())  # type: ignore[attr-defined]
        # LightGBM invents Column_0, Column_1, ... for unnamed features; those are not real names.
        generated = [f"Column_{i}" for i in range(len(names))]
        self.feature_names = tuple(names) if names and names != generated else None
        per_iteration = int(booster.num_model_per_iteration())  # type: ignore[attr-defined]
        output_shape = (-1, per_iteration) if per_iteration > 1 else (-1,)
        super().__init__(
            inputs=[TensorSpec("input-0", "FP64", (-1, self.n_features))],
            outputs=[TensorSpec("output-0", "FP64", output_shape)],
        )

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        # One thread: the replica has one predict worker next to the event loop (see xgboost.py).
        return [np.asarray(self._booster.predict(x, num_threads=1))]  # type: ignore[attr-defined]


def load(path: Path, *, task: str | None = None) -> LightGBMModel:
    lgb = import_without_sklearn("lightgbm")
    booster = lgb.Booster(model_file=str(path))
    return LightGBMModel(booster, lgb.basic.LightGBMError)

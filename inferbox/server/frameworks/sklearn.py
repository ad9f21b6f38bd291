"""scikit-learn models saved with joblib or pickle (``.joblib``, ``.pkl``, ``.pickle``).

Predictions come from the estimator's ``predict``, as in KServe's sklearnserver. Numeric rows are
cast to float64; rows holding strings (pipelines with categorical or text columns) are passed as an
object array. An estimator fitted on a DataFrame (it records ``feature_names_in_``) gets a DataFrame
with those columns, as KServe's server gives it, since a pipeline may select its columns by name.
Loading a pickle runs code from the file: model files are trusted input, like a container image.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np

from inferbox.server.datatypes import datatype_of
from inferbox.server.errors import ModelLoadError
from inferbox.server.model import Model, TensorSpec


class SklearnModel(Model):
    platform = "sklearn"

    def __init__(self, estimator: object) -> None:
        self._predict = estimator.predict  # type: ignore[attr-defined]
        n_features = getattr(estimator, "n_features_in_", None)
        self.n_features = int(n_features) if n_features is not None else None
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names = tuple(str(n) for n in names) if names is not None else None
        classes = getattr(estimator, "classes_", None)
        output_type = datatype_of(np.asarray(classes).dtype) if classes is not None else "FP64"
        width = self.n_features if self.n_features is not None else -1
        super().__init__(
            inputs=[TensorSpec("input-0", "FP64", (-1, width))],
            outputs=[TensorSpec("output-0", output_type, (-1,))],
        )

    def prepare(self, x: np.ndarray) -> np.ndarray:
        if x.dtype.kind in "UO":
            # Strings: a pipeline with categorical or text columns takes them as an object array; an
            # estimator that needs numbers refuses them itself (a 400, and its batch-mates are not
            # affected: arrays of another dtype are never concatenated with theirs).
            self.check_rows(x)
            return x.astype(object)
        return super().prepare(x)

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(self._predict(self._frame(x) if self.feature_names else x))]

    def _frame(self, x: np.ndarray) -> object:
        """`x` as a DataFrame with the model's feature names (numpy when pandas is not installed:
        an estimator fitted on a DataFrame has pandas next to it, so this is rare)."""
        try:
            # By name: pandas ships no type stubs, and only its DataFrame constructor is used here.
            pd = importlib.import_module("pandas")
        except ImportError:
            return x
        frame = pd.DataFrame(x, columns=list(self.feature_names or ()))
        # Object rows (strings beside numbers): each column gets the dtype of what it holds.
        return frame.infer_objects() if x.dtype.kind == "O" else frame


def load(path: Path, *, task: str | None = None) -> SklearnModel:
    import joblib

    estimator = joblib.load(path)
    if not callable(getattr(estimator, "predict", None)):
        raise ModelLoadError(f"{path.name} holds a {type(estimator).__name__}, which has no predict method")
    # An estimator fitted on a DataFrame warns on every numpy call; rows arrive as numpy by design.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    return SklearnModel(estimator)

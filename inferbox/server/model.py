"""What a loaded model looks like to the server, whatever its framework.

A :class:`Model` takes one numpy array whose first axis is the batch (rows) and returns a list of
arrays, one per output, each with the same number of rows. That contract is what lets the batcher
concatenate requests and split the results back. Framework modules subclass it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from inferbox.server.errors import InferenceError, one_line

#: numpy dtype kinds that count as numbers: bool, signed and unsigned ints, floats.
NUMERIC_KINDS = "biuf"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output as listed in V2 model metadata; ``-1`` marks a dimension of any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Model:
    """A loaded model. Subclasses set the attributes in ``__init__`` and implement :meth:`predict`.

    Attributes:
        platform: the V2 metadata ``platform`` string.
        inputs / outputs: V2 metadata. ``outputs`` also names, in order, the arrays :meth:`predict`
            returns.
        tabular: inputs are rows of feature values (a 2-D array). For such models a V2 input of shape
            ``[N]`` is one column, and several inputs are stacked as columns.
        n_features: the row width the model was trained on, when the model file records it; rows of
            another width are rejected before they reach the framework (and so before batching).
        feature_names: feature names recorded in the model file, if any; V1 object instances and V2
            per-column inputs are put in this order when their names match.
        input_dtype: the dtype numeric input is cast to before batching, so that batch-mates
            concatenate without surprises.
        named_inputs: the model takes several named inputs (V2 only, see :meth:`predict_named`).
        batchable: requests may be concatenated along the first axis.
        bad_input_errors: exception types the framework raises for bad input (reported as 400; any
            other exception from the framework is a 500).
    """

    platform: str = ""
    tabular: bool = True
    named_inputs: bool = False
    batchable: bool = True
    n_features: int | None = None
    feature_names: tuple[str, ...] | None = None
    input_dtype: np.dtype | None = np.dtype(np.float64)
    bad_input_errors: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, IndexError)

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        self.inputs = inputs
        self.outputs = outputs

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Check one request's input and cast it, raising ``InferenceError(400)`` for input the model
        cannot take. Runs on the event loop before batching, so a bad request fails alone."""
        if self.n_features is None:
            self.check_rows(x)
            # Width unknown: let the framework judge, but still refuse things that are not data.
            if x.dtype.kind == "U":
                return x.astype(object)
            if x.dtype.kind in NUMERIC_KINDS and self.input_dtype is not None:
                return x.astype(self.input_dtype, copy=False)
            return x
        if x.dtype.kind not in NUMERIC_KINDS:
            raise InferenceError(400, "feature values must be numbers")
        self.check_rows(x)
        return x if self.input_dtype is None else x.astype(self.input_dtype, copy=False)

    def check_rows(self, x: np.ndarray) -> None:
        """Raise a 400 unless ``x`` holds at least one row of :attr:`n_features` values (when known)."""
        if x.ndim == 0:
            raise InferenceError(400, "input must be a list of rows, not a single value")
        if x.shape[0] == 0:
            raise InferenceError(400, "no rows to predict")
        if self.n_features is None:
            return
        if x.ndim != 2:
            raise InferenceError(
                400,
                f"expected rows of {self.n_features} feature values, got an array of shape {list(x.shape)}",
            )
        if x.shape[1] != self.n_features:
            raise InferenceError(400, f"expected {self.n_features} feature values per row, got {x.shape[1]}")

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        """Run the framework on a batch; returns one array per entry of :attr:`outputs`."""
        raise NotImplementedError

    def predict_named(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run a model with several named inputs (only ONNX graphs have those)."""
        raise InferenceError(400, "this model takes a single input")

    def warm_up(self) -> None:
        """Run one prediction on zeros so the first real request does not pay for lazy initialisation.
        Best effort: a model that rejects zeros is simply not warmed up."""
        if self.n_features is None:
            return
        with contextlib.suppress(Exception):
            self.predict(np.zeros((1, self.n_features), dtype=self.input_dtype or np.float64))

    def error_for(self, exc: BaseException) -> InferenceError:
        """Map an exception raised by the framework to the HTTP error returned to the caller."""
        if isinstance(exc, InferenceError):
            return exc
        status = 400 if isinstance(exc, self.bad_input_errors) else 500
        return InferenceError(status, one_line(exc))

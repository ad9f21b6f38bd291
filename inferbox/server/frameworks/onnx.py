"""ONNX models (``.onnx``) run by onnxruntime on the CPU.

V1 instances (and a single V2 input) are fed to the graph's first input, cast to its element type.
Graphs with several inputs take V2 requests whose inputs are named like the graph's, unbatched.
Only tensor outputs are served: V1 returns the first, V2 all of them (or those asked for). Non-tensor
outputs, such as the ZipMap probability maps skl2onnx adds by default, are left out.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from inferbox.server.errors import InferenceError, ModelLoadError
from inferbox.server.model import NUMERIC_KINDS, Model, TensorSpec

_ELEMENT_TYPES: dict[str, tuple[str, np.dtype]] = {
    "tensor(bool)": ("BOOL", np.dtype(np.bool_)),
    "tensor(int8)": ("INT8", np.dtype(np.int8)),
    "tensor(int16)": ("INT16", np.dtype(np.int16)),
    "tensor(int32)": ("INT32", np.dtype(np.int32)),
    "tensor(int64)": ("INT64", np.dtype(np.int64)),
    "tensor(uint8)": ("UINT8", np.dtype(np.uint8)),
    "tensor(uint16)": ("UINT16", np.dtype(np.uint16)),
    "tensor(uint32)": ("UINT32", np.dtype(np.uint32)),
    "tensor(uint64)": ("UINT64", np.dtype(np.uint64)),
    "tensor(float16)": ("FP16", np.dtype(np.float16)),
    "tensor(float)": ("FP32", np.dtype(np.float32)),
    "tensor(double)": ("FP64", np.dtype(np.float64)),
    "tensor(string)": ("BYTES", np.dtype(object)),
}


def _dims(shape: list[object]) -> tuple[int, ...]:
    # Symbolic or unknown dimensions (strings, None) are "any size".
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


class OnnxModel(Model):
    platform = "onnxruntime_onnx"

    def __init__(self, session: Any, error_types: tuple[type[BaseException], ...]) -> None:
        self._session = session
        self.bad_input_errors = (*Model.bad_input_errors, *error_types)
        graph_inputs = session.get_inputs()
        inputs: list[TensorSpec] = []
        self._input_dtypes: dict[str, np.dtype] = {}
        for node in graph_inputs:
            if node.type not in _ELEMENT_TYPES:
                raise ModelLoadError(
                    f"input {node.name!r} has type {node.type}, which the server cannot feed"
                )
            datatype, dtype = _ELEMENT_TYPES[node.type]
            inputs.append(TensorSpec(node.name, datatype, _dims(node.shape)))
            self._input_dtypes[node.name] = dtype
        outputs = [
            TensorSpec(node.name, _ELEMENT_TYPES[node.type][0], _dims(node.shape))
            for node in session.get_outputs()
            if node.type in _ELEMENT_TYPES
        ]
        if not inputs or not outputs:
            raise ModelLoadError("the ONNX graph has no tensor input or no tensor output")
        super().__init__(inputs=inputs, outputs=outputs)
        first = inputs[0]
        self._first = first
        self.input_dtype = self._input_dtypes[first.name]
        self.tabular = len(first.shape) == 2
        self.batchable = len(first.shape) > 0 and first.shape[0] == -1
        if self.tabular and first.shape[1] != -1:
            self.n_features = first.shape[1]
        self._output_names = [spec.name for spec in outputs]
        self.named_inputs = len(inputs) > 1

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return self._check(self._first, x)

    def _check(self, spec: TensorSpec, x: np.ndarray) -> np.ndarray:
        dtype = self._input_dtypes[spec.name]
        if dtype.kind == "O":
            if x.dtype.kind not in "UO":
                raise InferenceError(400, f"input {spec.name!r} takes strings")
        elif x.dtype.kind not in NUMERIC_KINDS:
            raise InferenceError(400, f"input {spec.name!r} takes numbers")
        if len(spec.shape) != x.ndim or any(
            want not in (-1, got) for want, got in zip(spec.shape, x.shape, strict=True)
        ):
            raise InferenceError(
                400,
                f"input {spec.name!r} has shape {list(spec.shape)}, got an array of shape {list(x.shape)}",
            )
        if x.ndim and x.shape[0] == 0:
            raise InferenceError(400, "no rows to predict")
        return x.astype(dtype, copy=False)

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        outputs: list[np.ndarray] = self._session.run(self._output_names, {self._first.name: x})
        return outputs

    def predict_named(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        wanted = {spec.name for spec in self.inputs}
        if set(feeds) != wanted:
            raise InferenceError(400, f"this model takes the inputs {', '.join(sorted(wanted))}")
        checked = {spec.name: self._check(spec, feeds[spec.name]) for spec in self.inputs}
        outputs: list[np.ndarray] = self._session.run(self._output_names, checked)
        return outputs

    def warm_up(self) -> None:
        if self.named_inputs or self._input_dtypes[self._first.name].kind == "O":
            return
        shape = tuple(1 if d == -1 else d for d in self._first.shape)
        with contextlib.suppress(Exception):
            self.predict(np.zeros(shape, dtype=self.input_dtype))


def load(path: Path, *, task: str | None = None) -> OnnxModel:
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    options = ort.SessionOptions()
    # One thread each: the replica runs one batch at a time next to the event loop on a small machine;
    # more intra-op threads only fight the loop for cores at online batch sizes.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return OnnxModel(session, (ort_state.InvalidArgument, ort_state.Fail))

"""TorchScript models (``.pt``, ``.pth``) loaded with ``torch.jit.load`` on the CPU.

Optional: needs ``pip install 'inferbox[pytorch]'``. Float input is fed as float32 (what nearly every
model is traced with), integer input as int64. A tensor output, or a tuple/list/dict of tensors, is
returned as one array per output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inferbox.server.errors import InferenceError
from inferbox.server.model import NUMERIC_KINDS, Model, TensorSpec


class TorchScriptModel(Model):
    platform = "pytorch_torchscript"
    tabular = False
    input_dtype = None

    def __init__(self, torch: object, module: object) -> None:
        self._torch = torch
        self._module = module
        # Output count is only known after a call; metadata lists one output and predict names the rest.
        super().__init__(
            inputs=[TensorSpec("input-0", "FP32", (-1,))],
            outputs=[TensorSpec("output-0", "FP32", (-1,))],
        )
        # TorchScript reports shape errors as RuntimeError.
        self.bad_input_errors = (*Model.bad_input_errors, RuntimeError)

    def prepare(self, x: np.ndarray) -> np.ndarray:
        if x.dtype.kind not in NUMERIC_KINDS:
            raise InferenceError(400, "input values must be numbers")
        if x.ndim == 0 or x.shape[0] == 0:
            raise InferenceError(400, "no rows to predict")
        return x.astype(np.float32 if x.dtype.kind == "f" else np.int64, copy=False)

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():  # type: ignore[attr-defined]
            result = self._module(torch.from_numpy(x))  # type: ignore[attr-defined,operator]
        if isinstance(result, dict):
            result = list(result.values())
        elif not isinstance(result, (list, tuple)):
            result = [result]
        arrays = [r.detach().cpu().numpy() for r in result]
        if len(arrays) != len(self.outputs):
            self.outputs = [TensorSpec(f"output-{i}", "FP32", (-1,)) for i in range(len(arrays))]
        return arrays


def load(path: Path, *, task: str | None = None) -> TorchScriptModel:
    import torch

    module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    return TorchScriptModel(torch, module)

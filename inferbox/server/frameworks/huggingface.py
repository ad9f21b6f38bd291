"""Hugging Face transformers pipelines from a local directory holding ``config.json``.

Optional: needs ``pip install 'inferbox[huggingface]'``. The task comes from ``--task`` or, failing
that, from the architecture named in ``config.json`` (``...ForSequenceClassification`` is
text-classification, and so on). Nothing is fetched from the Hub: the directory must hold the weights
and tokenizer.

Instances are strings; each prediction is whatever the pipeline returns for one string (a dict or a
list of dicts), returned as JSON in V1 and as a JSON-encoded BYTES element in V2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inferbox.server.errors import InferenceError, ModelLoadError
from inferbox.server.model import Model, TensorSpec

# Architecture name suffix → pipeline task.
_TASKS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("ForImageClassification", "image-classification"),
)


def task_from_config(model_dir: Path) -> str | None:
    """The pipeline task implied by ``config.json``'s architectures, if it names a known head."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for architecture in config.get("architectures") or []:
        for suffix, task in _TASKS:
            if str(architecture).endswith(suffix):
                return task
    return None


class PipelineModel(Model):
    platform = "huggingface"
    tabular = False
    input_dtype = None

    def __init__(self, pipeline: object, task: str) -> None:
        self._pipeline = pipeline
        self.task = task
        super().__init__(
            inputs=[TensorSpec("input-0", "BYTES", (-1,))],
            outputs=[TensorSpec("output-0", "BYTES", (-1,))],
        )

    def prepare(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 1 or x.dtype.kind not in "UO" or not all(isinstance(v, str) for v in x):
            raise InferenceError(400, "instances must be a list of strings")
        if x.shape[0] == 0:
            raise InferenceError(400, "no rows to predict")
        return x.astype(object)

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        results = self._pipeline(list(x))  # type: ignore[operator]
        out = np.empty(len(results), dtype=object)
        for i, result in enumerate(results):  # assigned one by one so nested lists stay Python objects
            out[i] = result
        return [out]


def load(path: Path, *, task: str | None = None) -> PipelineModel:
    from transformers import pipeline

    task = task or task_from_config(path)
    if task is None:
        raise ModelLoadError(f"cannot tell the pipeline task of {path} from its config.json: pass --task")
    return PipelineModel(pipeline(task=task, model=str(path), device=-1), task)

"""Hugging Face transformers models from a local ``save_pretrained`` directory holding ``config.json``.

Optional: needs ``pip install 'inferbox[huggingface]'``. The task comes from ``--task`` (the model's
``args: {"task": ...}``) or, failing that, from ``config.json``: the architecture's head
(``...ForSequenceClassification`` is text-classification, ``...ForCausalLM`` text-generation, and so
on), or feature-extraction for a sentence-transformers directory (one with ``modules.json``). Nothing
is fetched from the Hub: the directory must hold the weights and tokenizer.

Text generation and embeddings are served as language models, with the OpenAI endpoints
(``inferbox.server.openai``) besides V1/V2:

- ``text-generation``: the transformers engine batches concurrent generations step by step; V1/V2
  predict complete each string greedily through the same engine.
- ``feature-extraction``: sentence embeddings (pooled as the directory says); V1/V2 predict return one
  vector per string, through the batcher like any tabular model.
- ``text-classification``: the pipeline (V1/V2 only, as any other pipeline task).

For pipeline tasks, instances are strings; each prediction is whatever the pipeline returns for one
string (a dict or a list of dicts), returned as JSON in V1 and as a JSON-encoded BYTES element in V2.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from inferbox.server.errors import InferenceError, ModelLoadError
from inferbox.server.llm.engine import Delta, Failed, Sampling, ServedLanguageModel
from inferbox.server.model import Model, TensorSpec

#: Only the files in the model directory, never the Hub (a config may name a remote repository: the
#: replica must not fetch what a tenant's files point at) and never code shipped with the model.
#: Pipelines (text-classification) get the same from ``HF_HUB_OFFLINE=1``, set before the import.
_LOCAL: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}

#: How many tokens V1/V2 predict generate per string at most.
PREDICT_NEW_TOKENS = 32

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
    """The task implied by the directory: ``config.json``'s architectures when they name a known
    head, feature-extraction for a sentence-transformers model, else ``None``."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for architecture in config.get("architectures") or []:
        for suffix, task in _TASKS:
            if str(architecture).endswith(suffix):
                return task
    if (model_dir / "modules.json").is_file():
        return "feature-extraction"
    return None


def _strings(x: np.ndarray) -> np.ndarray:
    if x.ndim != 1 or x.dtype.kind not in "UO" or not all(isinstance(v, str) for v in x):
        raise InferenceError(400, "instances must be a list of strings")
    if x.shape[0] == 0:
        raise InferenceError(400, "no rows to predict")
    return x.astype(object)


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
        return _strings(x)

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        results = self._pipeline(list(x))  # type: ignore[operator]
        out = np.empty(len(results), dtype=object)
        for i, result in enumerate(results):  # assigned one by one so nested lists stay Python objects
            out[i] = result
        return [out]


class GenerationModel(Model):
    """A causal language model. V1/V2 predict complete each string greedily (up to
    :data:`PREDICT_NEW_TOKENS` tokens, within the context) through the same engine, and so the same
    step-wise batching, as the OpenAI endpoints; each prediction is the generated continuation."""

    platform = "huggingface"
    tabular = False
    input_dtype = None

    def __init__(self, language: ServedLanguageModel) -> None:
        assert language.engine is not None
        self.task = language.task
        self.language = language
        self._engine = language.engine
        super().__init__(
            inputs=[TensorSpec("input-0", "BYTES", (-1,))],
            outputs=[TensorSpec("output-0", "BYTES", (-1,))],
        )

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return _strings(x)

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        # Called on the batcher's worker thread, which has no event loop: run one for the engine's
        # events. The engine thread does the work; this thread only waits.
        texts = asyncio.run(self._complete([str(v) for v in x]))
        out = np.empty(len(texts), dtype=object)
        out[:] = texts
        return [out]

    async def _complete(self, prompts: list[str]) -> list[str]:
        tokenizer = self.language.tokenizer
        context = self.language.context_length

        async def one(prompt: str) -> str:
            ids = [int(i) for i in tokenizer(prompt)["input_ids"]]
            if not ids:
                raise InferenceError(400, "instances must not be empty strings")
            if len(ids) >= context:
                raise InferenceError(400, f"a prompt has {len(ids)} tokens; the model's context is {context}")
            sampling = Sampling(max_new_tokens=min(PREDICT_NEW_TOKENS, context - len(ids)), temperature=0.0)
            parts: list[str] = []
            async for event in self._engine.submit(ids, sampling).events():
                if isinstance(event, Delta):
                    parts.append(event.text)
                elif isinstance(event, Failed):
                    raise RuntimeError(event.message)
            return "".join(parts)

        return list(await asyncio.gather(*(one(p) for p in prompts)))

    def close(self) -> None:
        self._engine.close()


class EmbeddingModel(Model):
    """Sentence embeddings: one float vector per input string."""

    platform = "huggingface"
    tabular = False
    input_dtype = None

    def __init__(self, language: ServedLanguageModel) -> None:
        assert language.embedder is not None
        self.task = language.task
        self.language = language
        self._embedder = language.embedder
        super().__init__(
            inputs=[TensorSpec("input-0", "BYTES", (-1,))],
            outputs=[TensorSpec("output-0", "FP32", (-1, language.embedder.dimensions))],
        )

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return _strings(x)

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        return [self._embedder.embed([str(v) for v in x])]

    def close(self) -> None:
        pass


def _context_length(model: Any, tokenizer: Any) -> int:
    config = model.config
    length = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return int(length or tokenizer.model_max_length)


def _set_torch_threads() -> None:
    """One intra-op thread unless ``INFERBOX_TORCH_THREADS`` (or ``OMP_NUM_THREADS``) says otherwise.

    Why: torch's intra-op threads synchronise at every operator, and a decoding step is hundreds of
    small operators. On a shared machine a step then waits for all its threads to be scheduled: the
    tiny test GPT-2 took 4.2 s for 64 tokens with torch's default (2 threads on 2 busy cores) and
    0.11 s with one. Replicas scale out as processes, and the engine batches within one; a big
    model on an idle many-core machine can ask for more threads.
    """
    import torch

    wanted = os.environ.get("INFERBOX_TORCH_THREADS") or os.environ.get("OMP_NUM_THREADS")
    try:
        threads = max(1, int(wanted)) if wanted else 1
    except ValueError:
        threads = 1
    torch.set_num_threads(threads)


def load(path: Path, *, task: str | None = None, max_batch: int = 32) -> Model:
    # Offline before transformers (and huggingface_hub) are imported: they read it at import time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, pipeline

    _set_torch_threads()
    task = task or task_from_config(path)
    if task is None:
        raise ModelLoadError(f"cannot tell the pipeline task of {path} from its config.json: pass --task")
    if task == "text-generation":
        from inferbox.server.llm.transformers_engine import TransformersEngine

        tokenizer = AutoTokenizer.from_pretrained(str(path), **_LOCAL)
        lm = AutoModelForCausalLM.from_pretrained(str(path), **_LOCAL).eval()
        engine = TransformersEngine(lm, tokenizer, max_batch=max_batch)
        language = ServedLanguageModel(task, tokenizer, _context_length(lm, tokenizer), engine=engine)
        return GenerationModel(language)
    if task == "feature-extraction":
        from inferbox.server.llm.embeddings import Embedder, pooling_of

        tokenizer = AutoTokenizer.from_pretrained(str(path), **_LOCAL)
        encoder = AutoModel.from_pretrained(str(path), **_LOCAL).eval()
        if tokenizer.pad_token is None:  # decoder tokenizers (GPT-2) have none; padding is masked anyway
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        embedder = Embedder(encoder, tokenizer, *pooling_of(path))
        language = ServedLanguageModel(task, tokenizer, embedder.context_length, embedder=embedder)
        return EmbeddingModel(language)
    classifier = pipeline(task=task, model=str(path), device=-1, trust_remote_code=False)
    return PipelineModel(classifier, task)

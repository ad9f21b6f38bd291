"""Sentence embeddings from an encoder: pooled token states, as sentence-transformers configures them.

A sentence-transformers directory (like all-MiniLM-L6-v2) says how to pool in ``1_Pooling/config.json``
(mean, CLS or max over the tokens) and whether to L2-normalise (a ``Normalize`` module in
``modules.json``). Other encoders get mean pooling, unnormalised. The few lines of pooling are done
here rather than by depending on sentence-transformers, which would pull its own training stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

Pooling = Literal["mean", "cls", "max"]


def pooling_of(model_dir: Path) -> tuple[Pooling, bool]:
    """(pooling, normalise) for the model in ``model_dir``."""
    pooling: Pooling = "mean"
    normalise = False
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
    except (OSError, ValueError):
        return pooling, normalise
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", ""))
        if kind.endswith(".Normalize"):
            normalise = True
        elif kind.endswith(".Pooling"):
            try:
                config = json.loads((model_dir / str(module.get("path", "")) / "config.json").read_text())
            except (OSError, ValueError):
                continue
            if config.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif config.get("pooling_mode_max_tokens"):
                pooling = "max"
    return pooling, normalise


class Embedder:
    """Embeds batches of strings with an encoder model (``AutoModel``) and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, pooling: Pooling, normalise: bool) -> None:
        import torch

        self._torch = torch
        self._model = model
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            # A decoder (GPT-2 served as feature-extraction) has no pad token. The pooling masks the
            # padded positions out, so any token pads: the end-of-text one, as transformers suggests.
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer = tokenizer
        self.pooling = pooling
        self.normalise = normalise
        self.context_length = int(getattr(model.config, "max_position_embeddings", 0) or 512)
        self.dimensions = int(model.config.hidden_size)

    def count(self, text: str) -> int:
        """Tokens ``text`` costs, special tokens included (what the model really reads)."""
        return len(self._tokenizer(text)["input_ids"])

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 ``[len(texts), dimensions]``; texts longer than the context are truncated."""
        torch = self._torch
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.context_length, return_tensors="pt"
        )
        with torch.inference_mode():
            states = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        if self.pooling == "cls":
            pooled = states[:, 0]
        elif self.pooling == "max":
            pooled = states.masked_fill(mask == 0, float("-inf")).max(dim=1).values
        else:
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        if self.normalise:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        result: np.ndarray = pooled.float().numpy()
        return result

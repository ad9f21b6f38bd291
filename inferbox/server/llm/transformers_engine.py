"""The transformers engine: concurrent generations batched step by step on one thread.

One worker thread owns the model. Each turn of its loop it admits waiting requests (up to
``max_batch`` running choices), running each new prompt once (the prefill) and merging its key/value
cache into the running batch, then runs ONE decoding step for every running choice together: a
single forward pass over a batch of one new token per choice. A request that arrives while others
are generating therefore joins at the next step instead of waiting for them to finish (continuous
batching, without paged attention).

The batch's caches are kept left-padded to a common length, with an attention mask marking the
padding and explicit position ids per row, so rows of different lengths share one forward pass.
Finished rows are dropped from the cache at once, and padding columns no row needs any more are cut.
This works for models whose cache is made of plain ``DynamicLayer`` layers (GPT-2, Llama, Qwen,
...); the loader checks it.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import threading
from dataclasses import dataclass
from typing import Any

from inferbox.server.errors import one_line
from inferbox.server.llm.engine import Delta, Failed, Finished, FinishReason, Generation, Sampling
from inferbox.server.llm.text import TextStream

logger = logging.getLogger("inferbox.server")
CANCELLED = "the request was cancelled"


@dataclass(eq=False)
class _Request:
    generation: Generation
    prompt: list[int]
    sampling: Sampling
    generator: Any  # torch.Generator | None


@dataclass(eq=False)
class _Row:
    """One choice being generated: its next input token (sampled, not yet in the cache)."""

    request: _Request
    index: int
    text: TextStream
    position: int  # tokens of this row already in the cache
    next_token: int = 0
    generated: int = 0
    done: bool = False


class TransformersEngine:
    """A :class:`~inferbox.server.llm.engine.TextEngine` over a transformers causal LM on the CPU."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 32) -> None:
        import torch
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        self._torch = torch
        self._cache_type = DynamicCache
        self._layer_type = DynamicLayer
        self._model = model
        self._tokenizer = tokenizer
        self._max_batch = max_batch
        config = model.config
        self.context_length = int(
            getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0) or 2048
        )
        eos = model.generation_config.eos_token_id if model.generation_config else None
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos: set[int] = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        # transformers 5 names the argument `cache`, older releases `past_key_values`.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._pending: collections.deque[_Request] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._mask: Any = None
        #: Decoding steps run and rows they carried (for tests and benchmarks: proof of batching).
        self.steps = 0
        self.step_rows = 0
        self.max_step_rows = 0
        self._thread = threading.Thread(target=self._run, name="inferbox-llm", daemon=True)
        self._thread.start()

    # -- the loop's side -------------------------------------------------------------------------

    def submit(self, prompt: list[int], sampling: Sampling) -> Generation:
        generation = Generation(asyncio.get_running_loop(), sampling.n)
        generator = None
        if sampling.seed is not None:
            generator = self._torch.Generator().manual_seed(sampling.seed)
        with self._wake:
            if self._closed:
                generation.push(Failed("the model server is shutting down"))
                return generation
            self._pending.append(_Request(generation, prompt, sampling, generator))
            self._wake.notify()
        return generation

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    # -- the worker thread -----------------------------------------------------------------------

    def _run(self) -> None:
        torch = self._torch
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._closed and not self._pending and not self._rows:
                        self._wake.wait()
                    if self._closed:
                        break
                    admitted = self._admit()
                try:
                    for request in admitted:
                        self._prefill(request)
                    self._drop_cancelled()
                    if self._rows:
                        self._step()
                except Exception as exc:  # the model failed: fail what is running, keep serving
                    logger.exception("generation failed")
                    self._fail_all(one_line(exc), admitted)
        self._fail_all("the model server is shutting down", list(self._pending))

    def _admit(self) -> list[_Request]:
        admitted: list[_Request] = []
        room = self._max_batch - len(self._rows)
        while self._pending and (room > 0 or not (self._rows or admitted)):
            request = self._pending[0]
            if request.generation.cancelled:
                self._pending.popleft()
                request.generation.push(Failed(CANCELLED))
                continue
            if request.sampling.n > room and (self._rows or admitted):
                break  # wait for room rather than overfill the batch
            self._pending.popleft()
            admitted.append(request)
            room -= request.sampling.n
        return admitted

    def _forward(self, input_ids: Any, cache: Any, mask: Any, positions: Any) -> tuple[Any, Any]:
        kwargs = {self._cache_arg: cache}
        out = self._model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs
        )
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = out.past_key_values
        return out.logits[:, -1, :].float(), new_cache

    def _prefill(self, request: _Request) -> None:
        torch = self._torch
        sampling = request.sampling
        rows = [
            _Row(request, i, TextStream(self._tokenizer, sampling.stop), len(request.prompt))
            for i in range(sampling.n)
        ]
        if sampling.max_new_tokens <= 0:
            for row in rows:
                self._finish(row, "length")
            return
        ids = torch.tensor([request.prompt], dtype=torch.long)
        mask = torch.ones_like(ids)
        positions = torch.arange(ids.shape[1], dtype=torch.long).unsqueeze(0)
        cache = self._cache_type()
        logits, cache = self._forward(ids, cache, mask, positions)
        if any(type(layer) is not self._layer_type for layer in cache.layers):
            raise RuntimeError("this model's key/value cache cannot be batched by the transformers engine")
        if sampling.n > 1:
            cache.batch_repeat_interleave(sampling.n)
            mask = mask.repeat(sampling.n, 1)
            logits = logits.repeat(sampling.n, 1)
        tokens = self._sample(logits, sampling, request.generator)
        kept = [i for i, row in enumerate(rows) if self._accept(row, tokens[i])]
        if not kept:
            return
        if len(kept) < len(rows):
            index = torch.tensor(kept, dtype=torch.long)
            cache.batch_select_indices(index)
            mask = mask[index]
        self._merge(cache, mask, [rows[i] for i in kept])

    def _step(self) -> None:
        torch = self._torch
        rows = self._rows
        ids = torch.tensor([[row.next_token] for row in rows], dtype=torch.long)
        positions = torch.tensor([[row.position] for row in rows], dtype=torch.long)
        mask = torch.cat([self._mask, torch.ones((len(rows), 1), dtype=self._mask.dtype)], dim=1)
        logits, self._cache = self._forward(ids, self._cache, mask, positions)
        self._mask = mask
        self.steps += 1
        self.step_rows += len(rows)
        self.max_step_rows = max(self.max_step_rows, len(rows))
        for row in rows:
            row.position += 1
        # Sample per request: each has its own settings and, with a seed, its own generator, so a
        # seeded request gives the same text whoever shares the batch with it.
        groups: dict[_Request, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(row.request, []).append(i)
        for request, members in groups.items():
            index = torch.tensor(members, dtype=torch.long)
            tokens = self._sample(logits[index], request.sampling, request.generator)
            for token, i in zip(tokens, members, strict=True):
                self._accept(rows[i], token)
        self._keep([i for i, row in enumerate(rows) if not row.done])

    def _sample(self, logits: Any, sampling: Sampling, generator: Any) -> list[int]:
        torch = self._torch
        if sampling.temperature <= 0.0:
            return [int(t) for t in torch.argmax(logits, dim=-1)]
        probs = torch.softmax(logits / sampling.temperature, dim=-1)
        if sampling.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
            before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
            sorted_probs[before >= sampling.top_p] = 0.0  # the most likely token always stays
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return [int(t) for t in torch.multinomial(probs, 1, generator=generator).squeeze(-1)]

    def _accept(self, row: _Row, token: int) -> bool:
        """Record a sampled token; False when the row is finished by it."""
        row.generated += 1
        if token in self._eos:
            self._finish(row, "stop")
            return False
        delta = row.text.push(token)
        if row.text.stopped:
            if delta:
                row.request.generation.push(Delta(row.index, delta))
            self._finish(row, "stop")
            return False
        if delta:
            row.request.generation.push(Delta(row.index, delta))
        row.next_token = token
        if row.generated >= row.request.sampling.max_new_tokens:
            self._finish(row, "length")
            return False
        return True

    def _finish(self, row: _Row, reason: FinishReason) -> None:
        row.done = True
        tail = row.text.flush()
        if tail:
            row.request.generation.push(Delta(row.index, tail))
        row.request.generation.push(Finished(row.index, reason, row.generated))

    def _drop_cancelled(self) -> None:
        cancelled = {row.request for row in self._rows if row.request.generation.cancelled}
        if cancelled:
            self._keep([i for i, row in enumerate(self._rows) if row.request not in cancelled])
            for request in cancelled:  # ends its event stream, should anyone still read it
                request.generation.push(Failed(CANCELLED))

    # -- the batch's cache -----------------------------------------------------------------------

    def _merge(self, cache: Any, mask: Any, rows: list[_Row]) -> None:
        """Add rows (with their cache and mask) to the running batch, left-padding the shorter side."""
        if not self._rows:
            self._cache, self._mask, self._rows = cache, mask, rows
            return
        torch = self._torch
        width = max(self._mask.shape[1], mask.shape[1])

        def pad(t: Any, dim: int) -> Any:
            missing = width - t.shape[dim]
            if missing == 0:
                return t
            shape = list(t.shape)
            shape[dim] = missing
            return torch.cat([torch.zeros(shape, dtype=t.dtype), t], dim=dim)

        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([pad(mine.keys, -2), pad(theirs.keys, -2)], dim=0)
            mine.values = torch.cat([pad(mine.values, -2), pad(theirs.values, -2)], dim=0)
        self._mask = torch.cat([pad(self._mask, 1), pad(mask, 1)], dim=0)
        self._rows = self._rows + rows

    def _keep(self, kept: list[int]) -> None:
        """Keep only the rows at ``kept``; cut padding columns that no remaining row uses."""
        if len(kept) == len(self._rows):
            return
        if not kept:
            self._rows, self._cache, self._mask = [], None, None
            return
        torch = self._torch
        index = torch.tensor(kept, dtype=torch.long)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        self._rows = [self._rows[i] for i in kept]
        used = self._mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else 0
        if start:
            self._mask = self._mask[:, start:]
            for layer in self._cache.layers:
                layer.keys = layer.keys[..., start:, :]
                layer.values = layer.values[..., start:, :]

    def _fail_all(self, message: str, extra: list[_Request]) -> None:
        requests = {row.request for row in self._rows} | set(extra)
        for request in requests:
            request.generation.push(Failed(message))
        self._rows, self._cache, self._mask = [], None, None

"""The app's generation service: every free-running answer of the chat model goes through one batcher.

Created once by app.build_demo and handed to the tabs (no module-level state): the QnA bot, the
document chat's answer, its follow-up rewrite and its no-retrieval answer submit requests here,
and requests from different sessions share forward passes (models/generation/batcher.py). The
decoding playground's step inspector, beam and contrastive search and the attention tab keep their
own single-request paths (they record per-step internals). So does the quantized tab: its fp32
answer is decoded step by step in lock-step with the quantized copy (a different model object,
which a batch of the fp32 model cannot hold), and its speed columns time one request alone, which
neighbours in a batch would distort.

With batching switched off (GENAI_LAB_BATCHING=0, for comparisons), `enabled` is False and
callers use their one-`generate()`-per-request path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from models.generation.batcher import BatchLimits, ContinuousBatcher
from models.generation.requests import GenerationRequest, TokenStream
from models.hardware import usable_cores
from models.registry import CausalLM


class GenerationService:
    """One continuous batcher per model object, started on first use."""

    def __init__(self, limits: BatchLimits = BatchLimits(), enabled: bool = True):
        self.limits = limits
        self.enabled = enabled
        self._batchers: dict[int, tuple[object, ContinuousBatcher]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> GenerationService:
        limits = BatchLimits(max_batch_size=settings.batch_size, max_tokens=settings.batch_tokens,
                             join_wait_s=settings.batch_wait_ms / 1000,
                             threads=settings.batch_threads or usable_cores())
        return cls(limits, enabled=settings.batching)

    def batcher(self, model) -> ContinuousBatcher:
        with self._lock:
            entry = self._batchers.get(id(model))
            if entry is None or entry[0] is not model:
                entry = (model, ContinuousBatcher(model, self.limits))
                self._batchers[id(model)] = entry
            return entry[1]

    def serve(self, lm: CausalLM) -> CausalLM:
        """`lm` as handed to code that streams free-running answers (models/chat.stream_answer): with
        batching on, a ServedLM whose answers go through this service; off, `lm` itself."""
        if not self.enabled:
            return lm
        return ServedLM(lm.model, lm.tokenizer, lm.source, lm.name, generation=self)

    def submit(self, model, request: GenerationRequest) -> TokenStream:
        """Queue `request` for `model`; iterate the returned stream for its token ids."""
        return self.batcher(model).submit(request)

    def close(self) -> None:
        with self._lock:
            batchers = [batcher for _, batcher in self._batchers.values()]
            self._batchers.clear()
        for batcher in batchers:
            batcher.close()


@dataclass
class ServedLM(CausalLM):
    """The chat model together with the service that decodes its free-running answers."""

    generation: GenerationService | None = None


def served(lm: CausalLM, generation: GenerationService | None) -> CausalLM:
    """`lm` as the app's generation service hands it out, or `lm` itself without a service."""
    return lm if generation is None else generation.serve(lm)


def cumulative_text(tokenizer, tokens: Iterable[int]) -> Iterator[str]:
    """The decoded answer so far after each token that changes it (special tokens skipped). A token
    that ends inside a multi-byte character waits for the token that completes it."""
    ids: list[int] = []
    text = ""
    for token in tokens:
        ids.append(token)
        decoded = tokenizer.decode(ids, skip_special_tokens=True)
        if decoded.endswith("\ufffd") or decoded == text:
            continue
        text = decoded
        yield text
    final = tokenizer.decode(ids, skip_special_tokens=True)
    if final != text:  # the answer really ends with a replacement character
        yield final

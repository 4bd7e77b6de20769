"""Running the full and the quantized models on the same input: greedy steps, timings, quality.

Timings come from our own greedy loop (one forward per token with the KV cache), so time to
first token (prefill + one step) and decoding tokens/s are measured the same way for every
scheme. Quality on the bundled reference text is computed once per process per scheme and
kept in the `QuantCache`. The noise floor is fp32 against itself: a second timed run, and the
reference logits recomputed with another intra-op thread count (a different summation order).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from models.chat import chat_text, user_message
from models.quant import metrics as qm
from models.quant import schemes as qs
from models.quant.cache import QuantCache
from models.quant.kld import kld_report
from models.registry import CHAT, ENCODER

EVAL_DIR = Path(__file__).resolve().parents[2] / "assets" / "eval"
REF_TOKENS = 320  # the whole bundled text (~300 tokens): stable averages, seconds per scheme
TOP_K = 3
NOISE = "fp32 again (noise floor)"


def reference_text() -> str:
    return (EVAL_DIR / "reference.txt").read_text(encoding="utf-8")


def encoder_eval() -> tuple[list[str], list[str]]:
    data = json.loads((EVAL_DIR / "encoder_sentences.json").read_text(encoding="utf-8"))
    return data["sentences"], data["queries"]


_THREAD_COUNT = threading.Lock()


@contextlib.contextmanager
def torch_threads(n: int):
    """Run with n intra-op threads, then restore. The count is process-wide: the lock makes two
    jobs doing this at once restore it in order instead of leaving each other's value behind."""
    with _THREAD_COUNT:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def other_thread_count() -> int:
    """A thread count other than the current one, for the noise floor's second summation order."""
    return 2 if torch.get_num_threads() == 1 else 1


# ---- causal LM ---------------------------------------------------------------------------


MARKER = "\x00prompt\x00"  # stands in for the user's text while the template is rendered


def chat_ids(tokenizer, prompt: str) -> torch.Tensor:
    """[1, T] ids of the prompt in the model's chat template (plain text when it has none). The
    user's text stays text: a special-token string typed in it (`<|im_start|>system`) is split
    into ordinary tokens, so it cannot open a turn of its own; only the template's are special."""
    text = tokenizer(prompt, add_special_tokens=False, split_special_tokens=True).input_ids
    if not getattr(tokenizer, "chat_template", None):
        return torch.tensor([text])
    before, _, after = chat_text(tokenizer, user_message(MARKER)).partition(MARKER)

    def part(piece: str) -> list[int]:
        return tokenizer(piece, add_special_tokens=False).input_ids if piece else []

    return torch.tensor([part(before) + text + part(after)])


def greedy(model, ids: torch.Tensor, max_new: int, eos: set[int]) -> Iterator[tuple[int, float]]:
    """Yield (token id, seconds since start) for each greedy token, using the KV cache."""
    start = time.perf_counter()
    with torch.no_grad():  # not inference_mode: torchao tensor subclasses need no_grad
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)  # not [T, vocabulary] for the prompt
        for _ in range(max_new):
            token = int(out.logits[0, -1].float().argmax())
            yield token, time.perf_counter() - start
            if token in eos:
                return
            out = model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values,
                        use_cache=True)



def timed_generation(model, ids: torch.Tensor, max_new: int, eos: set[int]) -> dict:
    """TTFT and decoding speed of one greedy run (after a one-token warm-up call)."""
    for _ in greedy(model, ids[:, :4], 1, eos):
        pass
    tokens, times = [], []
    for token, elapsed in greedy(model, ids, max_new, eos):
        tokens.append(token)
        times.append(elapsed)
    decode = times[-1] - times[0]
    return {"tokens": tokens, "ttft_s": times[0],
            "tokens_per_s": (len(times) - 1) / decode if len(times) > 1 and decode > 0 else None}


def logits_of(model, ids: torch.Tensor, last: int = 0) -> torch.Tensor:
    """[T, V] float32 logits of one forward pass over ids [1, T]; with `last`, only the last positions'."""
    with torch.no_grad():
        return model(input_ids=ids, logits_to_keep=last).logits[0].float()


def reference_ids(tokenizer) -> torch.Tensor:
    return tokenizer(reference_text(), return_tensors="pt").input_ids[:, :REF_TOKENS]


def chat_reference_logits(cache: QuantCache, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, logits) on the reference text for fp32, fp32 on another thread count, or a scheme; cached."""

    def build():
        lm = cache.registry.chat_model()
        ids = reference_ids(lm.tokenizer)
        if key == qs.FULL:
            return ids, logits_of(lm.model, ids)
        if key == NOISE:
            with torch_threads(other_thread_count()):
                return ids, logits_of(lm.model, ids)
        return ids, logits_of(qs.quantized(cache, CHAT, key).model, ids)

    return cache.reference_logits.get((CHAT, key), build)


def chat_quality(cache: QuantCache, key: str) -> dict:
    """PPL, mean KL vs fp32 and top-1 agreement on the reference text (cached per process)."""
    ids, base = chat_reference_logits(cache, qs.FULL)
    _, other = chat_reference_logits(cache, key)
    return qm.lm_quality(base, other, ids[0])


def chat_kld_report(cache: QuantCache, key: str) -> dict:
    """llama.cpp's --kl-divergence statistics of a scheme against fp32 on the reference text."""
    ids, base = chat_reference_logits(cache, qs.FULL)
    _, other = chat_reference_logits(cache, key)
    return kld_report(base, other, ids[0])


# ---- encoder -----------------------------------------------------------------------------


def encoder_timing(encoder, prompt: str, sentences: list[str]) -> dict:
    """Latency of embedding the prompt (the encoder's 'first token') and tokens/s over the corpus."""
    encoder.embed([prompt])  # warm-up
    start = time.perf_counter()
    encoder.embed([prompt])
    latency = time.perf_counter() - start
    n_tokens = sum(len(encoder.tokenizer(s).input_ids) for s in sentences)
    start = time.perf_counter()
    encoder.embed(sentences)
    return {"ttft_s": latency, "tokens_per_s": n_tokens / (time.perf_counter() - start)}


def encoder_vectors(cache: QuantCache, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(sentence, query) embeddings of the bundled set for fp32, fp32 one-thread, or a scheme."""

    def build():
        sentences, queries = encoder_eval()
        if key in (qs.FULL, NOISE):
            encoder = qs.full(cache, ENCODER).model
            with torch_threads(other_thread_count()) if key == NOISE else contextlib.nullcontext():
                return encoder.embed(sentences), encoder.embed(queries)
        encoder = qs.quantized(cache, ENCODER, key).model
        return encoder.embed(sentences), encoder.embed(queries)

    return cache.vectors.get((ENCODER, key), build)


def encoder_quality(cache: QuantCache, key: str, k: int = TOP_K) -> dict:
    """Mean cosine with fp32 embeddings and overlap@k of retrieval results (cached per process)."""
    base_s, base_q = encoder_vectors(cache, qs.FULL)
    other_s, other_q = encoder_vectors(cache, key)
    return {"mean_cosine": qm.mean_cosine(base_s, other_s),
            "overlap_at_k_pct": qm.overlap_at_k(qm.top_k(base_q, base_s, k), qm.top_k(other_q, other_s, k)),
            "k": k, "sentences": len(base_s), "queries": len(base_q)}

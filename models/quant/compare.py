"""The side-by-side on the user's prompt: both models answer, and where they part ways.

Causal LM: fp32 and the quantized model decode greedily in lock-step, one token each per step;
every step yields a snapshot, and the last one adds the token strip (for each fp32 token, the KL
between the two models' distributions at the step that chose it, and whether the quantized
model's top-1 differs there). Encoder: both rank the bundled sentences for the prompt, and each
sentence's embedding drift is one cosine. The request is checked once, before any model runs;
results are plain dataclasses (the tab turns them into HTML).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import zip_longest

import torch

from models.chat import eos_ids
from models.quant import metrics as qm
from models.quant import run
from models.quant import schemes as qs
from models.quant.cache import QuantCache
from models.quant.inputs import check_prompt_tokens, check_request
from models.registry import CHAT, ENCODER, ModelRegistry

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class FullWeights:
    """Where the 'full' model's weights came from."""

    display_name: str
    description: str  # the folder or hub id, and how it was found
    gguf_file: str | None  # offline: the packaged GGUF the fp32 weights were dequantized from


@dataclass(frozen=True)
class ChatSideBySide:
    """One snapshot of the two greedy outputs; `strip` is filled on the last one (done)."""

    label: str  # the quantized scheme
    weights: FullWeights
    full_tokens: tuple[str, ...]
    quant_tokens: tuple[str, ...]
    diverge_at: int | None  # index of the first token that differs
    done: bool
    strip: tuple[dict, ...] = ()  # per fp32 token: token, kl, flip, quant_token


@dataclass(frozen=True)
class EncoderSideBySide:
    """Top-k retrieval for the prompt with both encoders, and every bundled sentence's drift."""

    label: str
    full_hits: list[tuple[str, float]]  # (sentence, cosine with the prompt), best first
    quant_hits: list[tuple[str, float]]
    diverge_at: int | None  # first rank that differs
    sentences: list[str]
    cosines: list[float]  # cosine(fp32 embedding, quantized embedding) of each sentence


def full_weights(registry: ModelRegistry, model_key: str) -> FullWeights:
    spec, source = registry.specs[model_key], registry.resolve(model_key)
    dequantized = spec.package and spec.package.fmt == "gguf" and source.origin in ("package", "cache")
    return FullWeights(spec.display_name, source.describe(), spec.package.filename if dequantized else None)


def first_divergence(a: list, b: list) -> int | None:
    """Index of the first position where two sequences differ (None when one is a prefix of the other
    and they have the same length)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _diverged_so_far(a: list, b: list) -> int | None:
    """Divergence while streaming: only where both already have a token."""
    at = first_divergence(a, b)
    return at if at is not None and at < min(len(a), len(b)) else None


def token_strip(full_model, quant_model, tokenizer, prompt_ids: torch.Tensor, generated: list[int]) -> list[dict]:
    """For each token the full model generated: KL(full || quant) of the distribution that chose
    it, whether the quantized model's top-1 differs there, and what it would have picked."""
    if not generated:
        return []
    ids = torch.cat([prompt_ids, torch.tensor([generated])], dim=1)
    # logits[t] predict token t+1: the positions from the prompt's last token to the one before the last
    # generated token, the last len(generated) + 1 positions but one (never [T, vocabulary] of the prompt)
    keep = len(generated) + 1
    base = qm.log_probs(run.logits_of(full_model, ids, keep)[:-1])
    other = qm.log_probs(run.logits_of(quant_model, ids, keep)[:-1])
    kl = qm.kl_per_position(base, other).tolist()
    quant_top = other.argmax(-1).tolist()
    return [{"token": tokenizer.decode([tok]), "kl": kl[i], "flip": quant_top[i] != tok,
             "quant_token": tokenizer.decode([quant_top[i]])} for i, tok in enumerate(generated)]


def retrieve(encoder, query: str, sentences: list[str], k: int = run.TOP_K) -> list[tuple[str, float]]:
    """The k sentences closest to the query, with cosine scores."""
    vectors = encoder.embed(sentences)
    q = encoder.embed([query])
    hits = qm.top_k(q, vectors, k)[0]
    scores = (vectors[hits] @ q[0]).tolist()
    return [(sentences[i], s) for i, s in zip(hits.tolist(), scores, strict=False)]


def chat_prompt_ids(cache: QuantCache, prompt: str) -> torch.Tensor:
    """[1, T] ids of the prompt in SmolLM2's chat template; ValueError past the token bound."""
    ids = run.chat_ids(cache.registry.chat_model().tokenizer, prompt)
    check_prompt_tokens(ids.shape[1])
    return ids


def _chat(cache: QuantCache, key: str, ids: torch.Tensor, max_new: int, progress: Progress) -> Iterator[ChatSideBySide]:
    lm = cache.registry.chat_model()
    built = qs.quantized(cache, CHAT, key, progress)
    weights = full_weights(cache.registry, CHAT)
    eos = eos_ids(lm.tokenizer, lm.model)
    full_ids, quant_ids, full_tokens, quant_tokens = [], [], [], []
    steps = zip_longest(run.greedy(lm.model, ids, max_new, eos), run.greedy(built.model, ids, max_new, eos))
    for a, b in steps:
        for step, token_ids, tokens in ((a, full_ids, full_tokens), (b, quant_ids, quant_tokens)):
            if step is not None:
                token_ids.append(step[0])
                tokens.append(lm.tokenizer.decode([step[0]]))
        yield ChatSideBySide(built.label, weights, tuple(full_tokens), tuple(quant_tokens),
                             _diverged_so_far(full_ids, quant_ids), done=False)
    strip = token_strip(lm.model, built.model, lm.tokenizer, ids, full_ids)
    yield ChatSideBySide(built.label, weights, tuple(full_tokens), tuple(quant_tokens),
                         first_divergence(full_ids, quant_ids), done=True, strip=tuple(strip))


def _encoder(cache: QuantCache, key: str, prompt: str, progress: Progress) -> Iterator[EncoderSideBySide]:
    built = qs.quantized(cache, ENCODER, key, progress)
    full = qs.full(cache, ENCODER)
    sentences, _ = run.encoder_eval()
    a, b = retrieve(full.model, prompt, sentences), retrieve(built.model, prompt, sentences)
    base, other = (run.encoder_vectors(cache, k)[0] for k in (qs.FULL, key))
    cosines = (base * other).sum(1).tolist()  # unit vectors: the dot product is the cosine
    yield EncoderSideBySide(built.label, a, b, first_divergence([s for s, _ in a], [s for s, _ in b]),
                            sentences, cosines)


def side_by_side(cache: QuantCache, model_key: str, key: str, prompt: str, max_new: int,
                 progress: Progress | None = None) -> Iterator[ChatSideBySide | EncoderSideBySide]:
    """Check the request (ValueError, raised here, before anything runs), then the snapshots."""
    prompt, max_new = check_request(model_key, prompt, max_new)
    qs.scheme(model_key, key)
    report = progress or (lambda fraction, text: None)
    if model_key == CHAT:
        return _chat(cache, key, chat_prompt_ids(cache, prompt), max_new, report)
    return _encoder(cache, key, prompt, report)

"""Decoding settings: the config, how invalid or degenerate values are mapped, and the processors.

What one request may cost is bounded in tokens, not characters (4,000 characters of emoji are
16,000 SmolLM2 tokens): `check_budget` refuses a prompt over MAX_PROMPT_TOKENS, a search whose
key/value cache would hold more than MAX_CACHE_POSITIONS positions ((prompt + new tokens) x beams,
or x candidates for contrastive search, which copies the cache k times), and a beam search whose
full-vocabulary scores (new tokens x beams x vocabulary, kept for the token probabilities) would
pass MAX_SCORE_CELLS. `clamp_to_ui` brings every number an API client sends into the range the
playground's controls offer (UI_RANGES, which the tab's sliders are built from).

`build_stages` returns transformers' own LogitsProcessor objects in the order
`GenerationMixin._get_logits_processor` appends them: penalties (every strategy), then, only
when sampling, temperature, top-k, top-p, min-p and typical-p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from transformers import (
    LogitsProcessor,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

GREEDY, SAMPLING, BEAM, CONTRASTIVE = "greedy", "sampling", "beam search", "contrastive search"
STRATEGIES = (GREEDY, SAMPLING, BEAM, CONTRASTIVE)
MAX_NEW_TOKENS = 256
MAX_PROMPT_TOKENS = 1024
MAX_CACHE_POSITIONS = 8192  # SmolLM2 keeps 46 KB of keys and values per position: ~380 MB
MAX_SCORE_CELLS = 80_000_000  # float32 scores: 320 MB (8 beams x 200 new tokens x 49,152 tokens fits)
# (low, high) of each number the playground's controls offer; the API is clamped to the same.
UI_RANGES = {"temperature": (0, 2), "top_k": (0, 200), "top_p": (0, 1), "min_p": (0, 1), "typical_p": (0, 1),
             "repetition_penalty": (0.5, 2), "no_repeat_ngram_size": (0, 6), "max_new_tokens": (1, 200),
             "num_beams": (1, 8), "length_penalty": (-2, 2), "num_return_sequences": (1, 8),
             "penalty_alpha": (0, 1), "contrastive_k": (1, 20)}


@dataclass(frozen=True)
class DecodeConfig:
    """Every knob of the playground; field names match `model.generate()` where one exists."""

    strategy: str = SAMPLING
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    max_new_tokens: int = 40
    seed: int = 0
    num_beams: int = 4
    length_penalty: float = 1.0
    num_return_sequences: int = 1
    penalty_alpha: float = 0.6
    contrastive_k: int = 4
    chat_template: bool = True


def seed_of(value) -> int:
    """A seed from a form or an API value: None, a float, a string or NaN become a non-negative int."""
    try:
        return abs(int(float(value or 0))) % 2**63
    except (TypeError, ValueError, OverflowError):
        return 0


def clamp_to_ui(cfg: DecodeConfig) -> DecodeConfig:
    """Every number brought into the range its control offers (non-numbers and NaN: the default)."""
    default, changes = DecodeConfig(), {}
    for name, (low, high) in UI_RANGES.items():
        value, fallback = getattr(cfg, name), getattr(default, name)
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float(fallback)
        if not math.isfinite(number):
            number = float(fallback)
        number = min(max(number, low), high)
        changes[name] = int(number) if isinstance(fallback, int) else number
    return replace(cfg, **changes, seed=seed_of(cfg.seed), strategy=str(cfg.strategy),
                   chat_template=bool(cfg.chat_template))


def check_budget(n_prompt_tokens: int, cfg: DecodeConfig, vocab_size: int) -> None:
    """ValueError with a sentence if this request would pass a token or memory bound (cfg normalized)."""
    if n_prompt_tokens > MAX_PROMPT_TOKENS:
        raise ValueError(f"The prompt is {n_prompt_tokens:,} tokens; the playground takes up to {MAX_PROMPT_TOKENS:,}. "
                         "Decoding effects show best on a short prompt.")
    width, what = 1, ""
    if cfg.strategy == BEAM:
        width, what = cfg.num_beams, f"Beam search with {cfg.num_beams} beams"
    elif cfg.strategy == CONTRASTIVE:
        width, what = cfg.contrastive_k, f"Contrastive search with {cfg.contrastive_k} candidates"
    positions = (n_prompt_tokens + cfg.max_new_tokens) * width
    if positions > MAX_CACHE_POSITIONS:
        raise ValueError(f"{what} keeps {width} copies of the text's cache: ({n_prompt_tokens:,} prompt + "
                         f"{cfg.max_new_tokens} new tokens) x {width} = {positions:,} positions; this server allows "
                         f"{MAX_CACHE_POSITIONS:,}. Use fewer {'beams' if cfg.strategy == BEAM else 'candidates'}, "
                         "fewer new tokens or a shorter prompt.")
    cells = cfg.max_new_tokens * width * vocab_size if cfg.strategy == BEAM else 0
    if cells > MAX_SCORE_CELLS:
        raise ValueError(f"{what} and {cfg.max_new_tokens} new tokens would keep {cells / 1e6:,.0f} million scores "
                         f"(one per vocabulary token, beam and step); this server allows "
                         f"{MAX_SCORE_CELLS / 1e6:,.0f} million. Use fewer beams or new tokens.")


def normalize(cfg: DecodeConfig) -> tuple[DecodeConfig, list[str]]:
    """Map invalid or degenerate settings to what they mean, with one sentence per change."""
    notes: list[str] = []
    c = cfg
    if c.strategy not in STRATEGIES:
        notes.append(f"Unknown strategy {c.strategy!r}: using sampling.")
        c = replace(c, strategy=SAMPLING)
    n = int(c.max_new_tokens)
    if not 1 <= n <= MAX_NEW_TOKENS:
        n = min(max(n, 1), MAX_NEW_TOKENS)
        notes.append(f"Max new tokens must be between 1 and {MAX_NEW_TOKENS}: using {n}.")
    c = replace(c, max_new_tokens=n, seed=abs(int(c.seed)) % 2**63, top_k=int(c.top_k),
                no_repeat_ngram_size=max(0, int(c.no_repeat_ngram_size)))
    if c.repetition_penalty <= 0:
        notes.append("Repetition penalty must be > 0 (it divides logits); 1 means no penalty, so it is off.")
        c = replace(c, repetition_penalty=1.0)
    if c.strategy == SAMPLING:
        if c.temperature <= 0:
            notes.append("Temperature 0 would divide the logits by zero; its limit is always picking the "
                         "most likely token, so this runs **greedy** decoding.")
            c = replace(c, strategy=GREEDY)
        elif c.top_k == 1:
            notes.append("Top-k = 1 keeps a single token at every step: that is **greedy** decoding.")
            c = replace(c, strategy=GREEDY)
        elif c.top_p <= 0:
            notes.append("Top-p = 0 keeps only the most likely token (at least one always survives): "
                         "that is **greedy** decoding.")
            c = replace(c, strategy=GREEDY)
        elif c.min_p >= 1:
            notes.append("Min-p = 1 keeps only tokens as likely as the top one: that is **greedy** decoding.")
            c = replace(c, strategy=GREEDY)
    if c.strategy == SAMPLING:
        if c.top_k < 0:
            notes.append("Top-k must be >= 0; 0 means no top-k filter (Hugging Face's convention).")
            c = replace(c, top_k=0)
        if c.top_p > 1:
            notes.append("Top-p above 1 keeps everything: the filter is off.")
            c = replace(c, top_p=1.0)
        if c.min_p < 0:
            notes.append("Min-p below 0 removes nothing: the filter is off.")
            c = replace(c, min_p=0.0)
        if c.typical_p <= 0:
            notes.append("Typical-p must be > 0: using 0.01 (only the most *typical* token survives, "
                         "which is not always the most likely one).")
            c = replace(c, typical_p=0.01)
        elif c.typical_p > 1:
            c = replace(c, typical_p=1.0)
        if c.temperature < 0.05:
            notes.append("Temperatures below 0.05 make sampling practically greedy.")
    if c.strategy == BEAM:
        beams = min(max(int(c.num_beams), 1), 8)
        if beams < 2:
            notes.append("Beam search with one beam keeps one hypothesis: that is **greedy** decoding.")
            c = replace(c, strategy=GREEDY, num_beams=1)
        else:
            ret = min(max(int(c.num_return_sequences), 1), beams)
            if ret != c.num_return_sequences:
                notes.append(f"Beam search can return at most num_beams sequences: returning {ret}.")
            c = replace(c, num_beams=beams, num_return_sequences=ret)
    if c.strategy == CONTRASTIVE:
        if c.penalty_alpha <= 0:
            notes.append("Contrastive search with penalty α = 0 ignores the degeneration penalty: "
                         "that is **greedy** decoding.")
            c = replace(c, strategy=GREEDY)
        elif c.contrastive_k <= 1:
            notes.append("Contrastive search with one candidate has no choice to make: that is **greedy**.")
            c = replace(c, strategy=GREEDY)
        else:
            c = replace(c, penalty_alpha=min(float(c.penalty_alpha), 1.0),
                        contrastive_k=min(int(c.contrastive_k), 20))
    if cfg.strategy == GREEDY and c.strategy == GREEDY and (c.temperature != 1 or c.top_p < 1):
        notes.append("Greedy decoding ignores temperature, top-k, top-p, min-p and typical-p: "
                     "they only reshape the distribution that *sampling* draws from.")
    return c, notes


def build_stages(cfg: DecodeConfig) -> list[tuple[str, LogitsProcessor]]:
    """The active processors, named, in the order `generate()` applies them."""
    stages: list[tuple[str, LogitsProcessor]] = []
    if cfg.repetition_penalty != 1.0:
        stages.append((f"repetition penalty {cfg.repetition_penalty:g}",
                       RepetitionPenaltyLogitsProcessor(float(cfg.repetition_penalty))))
    if cfg.no_repeat_ngram_size > 0:
        stages.append((f"no-repeat {cfg.no_repeat_ngram_size}-gram",
                       NoRepeatNGramLogitsProcessor(int(cfg.no_repeat_ngram_size))))
    if cfg.strategy != SAMPLING:  # warpers only run when sampling (generate's do_sample)
        return stages
    if cfg.temperature != 1.0:
        stages.append((f"temperature {cfg.temperature:g}", TemperatureLogitsWarper(float(cfg.temperature))))
    if cfg.top_k != 0:
        stages.append((f"top-k {cfg.top_k}", TopKLogitsWarper(top_k=int(cfg.top_k))))
    if cfg.top_p < 1.0:
        stages.append((f"top-p {cfg.top_p:g}", TopPLogitsWarper(top_p=float(cfg.top_p))))
    if cfg.min_p > 0:
        stages.append((f"min-p {cfg.min_p:g}", MinPLogitsWarper(min_p=float(cfg.min_p))))
    if cfg.typical_p < 1.0:
        stages.append((f"typical-p {cfg.typical_p:g}", TypicalLogitsWarper(mass=float(cfg.typical_p))))
    return stages

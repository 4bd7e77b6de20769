"""Decoding settings: the config, how invalid or degenerate values are mapped, and the processors.

`build_stages` returns transformers' own LogitsProcessor objects in the order
`GenerationMixin._get_logits_processor` appends them: penalties (every strategy), then, only
when sampling, temperature, top-k, top-p, min-p and typical-p.
"""

from __future__ import annotations

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

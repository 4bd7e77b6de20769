"""Example settings that show classic decoding effects, and configurations to compare side by side."""

from __future__ import annotations

from dataclasses import replace

from models.decoding.steps import BEAM, CONTRASTIVE, GREEDY, SAMPLING, DecodeConfig

LOOP_PROMPT = "The cat sat on the mat. The dog sat on the"  # greedy falls into a loop within 80 tokens
STORY_PROMPT = "The best thing about living in a small town is that"

# name -> (prompt, config, what to look for)
PRESETS: dict[str, tuple[str, DecodeConfig, str]] = {
    "Greedy repetition loop": (
        LOOP_PROMPT, DecodeConfig(strategy=GREEDY, chat_template=False, max_new_tokens=80),
        "Greedy always takes the top token; once a phrase repeats, it stays the most likely: a loop."),
    "Repetition penalty breaks the loop": (
        LOOP_PROMPT, DecodeConfig(strategy=GREEDY, chat_template=False, max_new_tokens=80,
                                  repetition_penalty=1.3, no_repeat_ngram_size=3),
        "The penalty stage lowers tokens already used and the 3-gram ban removes repeats: open a step."),
    "High temperature gibberish": (
        STORY_PROMPT, DecodeConfig(strategy=SAMPLING, chat_template=False, temperature=2.0, top_k=0, top_p=1.0,
                                  max_new_tokens=40, seed=7),
        "T = 2 flattens the distribution: rare tokens get real probability and the text falls apart."),
    "Top-p tames it": (
        STORY_PROMPT, DecodeConfig(strategy=SAMPLING, chat_template=False, temperature=2.0, top_k=0, top_p=0.3,
                                  max_new_tokens=40, seed=7),
        "Same T = 2 and seed, but top-p 0.3 cuts the long tail: same draws, sensible tokens."),
    "Min-p at high temperature": (
        STORY_PROMPT, DecodeConfig(strategy=SAMPLING, chat_template=False, temperature=2.0, top_k=0, min_p=0.1,
                                  max_new_tokens=40, seed=7),
        "Min-p keeps tokens with at least 10% of the top token's probability: it scales with confidence."),
    "Beam search": (
        "Write one sentence about the sea.", DecodeConfig(strategy=BEAM, num_beams=4, num_return_sequences=3,
                                                          max_new_tokens=40),
        "Four hypotheses are kept at every step; the Beams table shows the finalists and their log-probs."),
    "Contrastive search": (
        LOOP_PROMPT, DecodeConfig(strategy=CONTRASTIVE, chat_template=False, penalty_alpha=0.6, contrastive_k=4,
                                  max_new_tokens=80),
        "Candidates whose hidden state repeats the context are penalized: compare with the greedy loop."),
}

CURRENT = "Current settings"
# Configurations for the side-by-side view; prompt, seed, length and template come from the form.
COMPARE: dict[str, DecodeConfig | None] = {
    CURRENT: None,
    "Greedy": DecodeConfig(strategy=GREEDY),
    "Beam search (4 beams)": DecodeConfig(strategy=BEAM, num_beams=4),
    "Sampling T=0.7, top-p 0.9": DecodeConfig(strategy=SAMPLING, temperature=0.7, top_k=0, top_p=0.9),
    "Sampling T=1.5, no filter": DecodeConfig(strategy=SAMPLING, temperature=1.5, top_k=0),
    "Contrastive α=0.6, k=4": DecodeConfig(strategy=CONTRASTIVE, penalty_alpha=0.6, contrastive_k=4),
}


def compare_config(name: str, current: DecodeConfig) -> DecodeConfig:
    """The named configuration with the form's seed, length and prompt format."""
    base = COMPARE[name]
    if base is None:
        return current
    return replace(base, seed=current.seed, max_new_tokens=current.max_new_tokens,
                   chat_template=current.chat_template)

"""Beam search through `model.generate()`, returning every final beam with its scores.

A beam's *cumulative log-probability* is the sum of its tokens' log-probabilities; the
*sequence score* that beam search ranks by divides it by length ** length_penalty, so a
length_penalty > 0 favours longer beams and < 0 shorter ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from models.decoding.code import generate_kwargs
from models.decoding.config import check_budget
from models.decoding.steps import DecodeConfig, TextAssembler, encode_prompt


@dataclass
class Beam:
    text: str
    pieces: list[str]  # one text piece per generated token
    token_probs: list[float]  # probability of each token in its beam's distribution
    logprob: float  # cumulative log-probability
    score: float  # the length-normalized score beam search ranks by
    length: int


@dataclass
class BeamResult:
    beams: list[Beam]  # best first


def beam_search(lm, prompt: str, cfg: DecodeConfig, max_time: float | None = None) -> BeamResult:
    """Run beam search with cfg's beams, length penalty and penalties (cfg normalized); with
    `max_time`, generate stops after that many seconds (transformers' MaxTimeCriteria) with the
    beams it has."""
    model, tok = lm.model, lm.tokenizer
    input_ids = encode_prompt(tok, prompt, cfg.chat_template)
    check_budget(input_ids.shape[1], cfg, model.config.vocab_size)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             return_dict_in_generate=True, output_scores=True,
                             pad_token_id=tok.pad_token_id or tok.eos_token_id, max_time=max_time,
                             **generate_kwargs(cfg))
        transition = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices,
                                                     normalize_logits=False)
    n = input_ids.shape[1]
    beams = []
    for seq, trans, used, score in zip(out.sequences, transition, out.beam_indices, out.sequences_scores, strict=False):
        length = int((used >= 0).sum())  # beams that finished early are padded (beam index -1)
        ids, logps = seq[n:n + length].tolist(), trans[:length].tolist()
        text = TextAssembler(tok)
        pieces = [text.add(i) for i in ids]
        beams.append(Beam(text.text, pieces, [math.exp(lp) for lp in logps], float(sum(logps)),
                          float(score), length))
    return BeamResult(beams)

"""Step-by-step decoding that records what every LogitsProcessor did to the distribution.

The loop mirrors `model.generate()`: one prefill, then one token per forward pass with a KV
cache; the scores go through transformers' own processors in the order `generate()` builds
them (penalties first, then temperature, top-k, top-p, min-p, typical-p). Each stage's
softmax is recorded, so the numbers shown are exactly the ones that produced the text.

Sampling draws one uniform number per step from a `torch.Generator` seeded per request
(never the global RNG, so concurrent users cannot disturb each other) and picks the token
whose segment of the cumulative-probability strip (tokens sorted by probability) contains it.
Same seed -> same draws -> same text, and the draw can be shown as a needle on the strip.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, LogitsProcessor

from models.chat import encode_chat, eos_ids, strip_special_tokens, user_message
from models.decoding.config import (  # noqa: F401 (re-exported: the playground's public names)
    BEAM,
    CONTRASTIVE,
    GREEDY,
    MAX_NEW_TOKENS,
    SAMPLING,
    STRATEGIES,
    DecodeConfig,
    build_stages,
    check_budget,
    normalize,
)
from models.decoding.contrastive import contrastive_steps
from models.time_limit import within

N_CANDIDATES = 12  # rows of the candidates table (top of the raw and of the final distribution)
N_STRIP = 40  # segments of the cumulative strip kept for the chart


@dataclass
class Stage:
    """One pipeline stage at one step: how the distribution looked after it."""

    name: str
    surviving: int  # tokens with non-zero probability
    mass_kept: float  # share of the previous stage's probability mass that survived
    entropy_bits: float
    chosen_prob: float
    chosen_rank: int  # 1 = most likely


@dataclass
class Candidate:
    token_id: int
    token: str
    probs: list[float]  # one per stage, in Step.stages order
    chosen: bool


@dataclass
class Step:
    """Everything recorded about one generated token."""

    index: int
    token_id: int
    token: str  # the text this token added to the output
    prob: float  # probability it had in the distribution it was chosen from
    stages: list[Stage]
    candidates: list[Candidate]
    draw: float | None = None  # the uniform number of a sampled step
    strip: list[tuple[int, str, float]] = field(default_factory=list)  # final distribution, sorted
    contrastive: list[dict] | None = None  # candidates with probability, penalty and score


def encode_prompt(tokenizer, prompt: str, chat_template: bool) -> torch.Tensor:
    """Token ids (1, n) of the raw prompt, or of the prompt wrapped in the chat template."""
    if chat_template:
        return torch.tensor([encode_chat(tokenizer, user_message(prompt))])
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    if ids.shape[1] == 0:
        raise ValueError("The prompt is empty: type something for the model to continue.")
    return ids


LN2 = math.log(2)


def _draw_token(probs: torch.Tensor, u: float) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Inverse-CDF sampling over the tokens sorted by probability: (token, sorted probs, their ids).

    Only the head of the order is needed until the cumulative mass passes u, so a top-k grows
    until it does instead of sorting the whole vocabulary every step.
    """
    target = u * float(probs.double().sum())
    k = min(256, probs.numel())
    while True:
        top_p, top_ids = torch.topk(probs, k)  # sorted, deterministic for the same input
        cdf = torch.cumsum(top_p.double(), 0)
        if float(cdf[-1]) > target or k == probs.numel():
            break
        k = min(k * 8, probs.numel())
    alive = int((top_p > 0).sum())
    pos = min(int(torch.searchsorted(cdf, torch.tensor([target], dtype=torch.float64), right=True)), alive - 1)
    return int(top_ids[pos]), top_p, top_ids


class Recorder:
    """Runs the stages on one step's logits and turns the result into a plain `Step`."""

    def __init__(self, tokenizer, stages: list[tuple[str, LogitsProcessor]]):
        self.tokenizer = tokenizer
        self.stages = stages
        self._pieces: dict[int, str] = {}

    def piece(self, token_id: int) -> str:
        if token_id not in self._pieces:
            self._pieces[token_id] = self.tokenizer.decode([token_id])
        return self._pieces[token_id]

    def process(self, input_ids: torch.Tensor, logits: torch.Tensor) -> list[torch.Tensor]:
        """Probabilities after each stage: [raw, after stage 1, ...] (each shape (V,))."""
        scores = logits
        probs = [torch.softmax(scores, -1)[0]]
        for _, processor in self.stages:
            scores = processor(input_ids, scores)
            probs.append(torch.softmax(scores, -1)[0])
        return probs

    def record(self, index: int, token_id: int, probs: list[torch.Tensor], draw: float | None,
               text: str, sorted_final: tuple[torch.Tensor, torch.Tensor] | None = None) -> Step:
        names = ["raw softmax"] + [name for name, _ in self.stages]
        stacked = torch.stack(probs)  # (S, V); every figure below is one vectorized op over it
        chosen_p = stacked[:, token_id]
        alive = stacked > 0
        surviving = alive.sum(1).tolist()
        ranks = ((stacked > chosen_p[:, None]).sum(1) + 1).tolist()
        entropy = (torch.special.entr(stacked).sum(1) / LN2).tolist()
        kept = [1.0] + (stacked[:-1] * alive[1:]).sum(1).tolist()
        chosen_list = chosen_p.tolist()
        stages = [Stage(name, surviving[s], kept[s], entropy[s], chosen_list[s], ranks[s])
                  for s, name in enumerate(names)]
        ids = torch.cat([torch.topk(stacked[0], N_CANDIDATES).indices, torch.topk(stacked[-1], N_CANDIDATES).indices,
                         torch.tensor([token_id])]).unique().tolist()
        table = stacked[:, ids].T.tolist()
        rows = sorted(zip(ids, table, strict=True), key=lambda r: (-r[1][-1], -r[1][0]))
        candidates = [Candidate(i, self.piece(i), row, i == token_id) for i, row in rows]
        if sorted_final is None:
            sorted_final = torch.topk(stacked[-1], N_STRIP)
        sp, order = sorted_final
        top = zip(sp[:N_STRIP].tolist(), order[:N_STRIP].tolist(), strict=True)
        strip = [(i, self.piece(i), p) for p, i in top if p > 0]
        return Step(index, token_id, text, float(chosen_p[-1]), stages, candidates, draw, strip)


class TextAssembler:
    """Turns generated ids into per-token text pieces that always add up to the decoded text."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        new = self.tokenizer.decode(self.ids)
        piece = new[len(self.text):] if new.startswith(self.text) else self.tokenizer.decode([token_id])
        self.text = new
        return piece



def stream_steps(lm, prompt: str, cfg: DecodeConfig) -> Iterator[Step]:
    """Generate token by token (greedy, sampling or contrastive), yielding one `Step` each.

    `cfg` must already be normalized. Beam search has its own module (models/decoding/beams.py).
    """
    if cfg.strategy == BEAM:
        raise ValueError("Beam search keeps several hypotheses: use models.beams.beam_search.")
    model, tok = lm.model, lm.tokenizer
    input_ids = encode_prompt(tok, prompt, cfg.chat_template)
    check_budget(input_ids.shape[1], cfg, model.config.vocab_size)
    recorder = Recorder(tok, build_stages(cfg))
    text = TextAssembler(tok)
    stop = eos_ids(lm.tokenizer, lm.model)
    if cfg.strategy == CONTRASTIVE:
        yield from _contrastive(lm, input_ids, cfg, recorder, text, stop)
        return
    generator = torch.Generator().manual_seed(cfg.seed)  # per request: never the global RNG
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        out = model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    for index in range(cfg.max_new_tokens):
        with torch.inference_mode():
            logits = out.logits[:, -1].to(dtype=torch.float32, copy=True)
            probs = recorder.process(input_ids, logits)
            draw, sorted_final = None, None
            if cfg.strategy == SAMPLING:
                draw = float(torch.rand((), generator=generator, dtype=torch.float64))
                token_id, *sorted_final = _draw_token(probs[-1], draw)
            else:  # greedy: argmax of the processed scores, as generate() does
                token_id = int(torch.argmax(probs[-1]))
            step = recorder.record(index, token_id, probs, draw, text.add(token_id), sorted_final)
            input_ids = torch.cat([input_ids, torch.tensor([[token_id]])], dim=-1)
            if token_id not in stop and index + 1 < cfg.max_new_tokens:
                out = model(input_ids=input_ids[:, -1:], past_key_values=out.past_key_values, use_cache=True)
        yield step
        if token_id in stop:
            return


def _contrastive(lm, input_ids, cfg, recorder: Recorder, text: TextAssembler, stop) -> Iterator[Step]:
    for index, cs in enumerate(contrastive_steps(
            lm.model, input_ids, penalty_alpha=cfg.penalty_alpha, top_k=cfg.contrastive_k,
            max_new_tokens=cfg.max_new_tokens, stop_ids=stop, process=recorder.process)):
        step = recorder.record(index, cs.token_id, cs.probs, None, text.add(cs.token_id))
        step.prob = float(cs.probs[-1][cs.token_id])
        step.contrastive = [{"token": recorder.piece(c.token_id), "probability": c.prob,
                             "degeneration penalty": c.max_similarity, "score": c.score,
                             "chosen": c.token_id == cs.token_id} for c in cs.candidates]
        yield step


def generate_text(lm, prompt: str, cfg: DecodeConfig,
                  max_time: float | None = None) -> tuple[str, list[Step], list[str]]:
    """Run to the end, or for at most `max_time` seconds: (generated text without special tokens,
    steps, notes). Beam search returns the best beam. The steps still show every token, the
    end-of-turn token included."""
    cfg, notes = normalize(cfg)
    if cfg.strategy == BEAM:
        from models.decoding.beams import beam_search

        best = beam_search(lm, prompt, cfg, max_time).beams[0]
        return strip_special_tokens(lm.tokenizer, best.text), [], notes
    stream = stream_steps(lm, prompt, cfg)
    steps = list(stream if max_time is None else within(stream, max_time))
    return strip_special_tokens(lm.tokenizer, "".join(s.token for s in steps)), steps, notes


def temperature_sweep(lm, prompt: str, chat_template: bool, temperatures: list[float], top_p: float,
                      n: int = 15) -> dict:
    """Next-token probabilities of the prompt's top-n tokens at several temperatures.

    Returns {"tokens": [...], "probs": {T: [...]}, "cut": {T: number of tokens top-p keeps}}.
    Temperature never reorders tokens, so one ordering serves every curve.
    """
    ids = encode_prompt(lm.tokenizer, prompt, chat_template)
    check_budget(ids.shape[1], DecodeConfig(strategy=GREEDY, max_new_tokens=1), lm.model.config.vocab_size)
    with torch.inference_mode():
        logits = lm.model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
    order = torch.argsort(logits, descending=True, stable=True)
    tokens = [lm.tokenizer.decode([int(i)]) for i in order[:n]]
    probs, cut = {}, {}
    for t in temperatures:
        p = torch.softmax(logits / max(t, 1e-6), -1)[order]
        probs[t] = p[:n].tolist()
        # TopPLogitsWarper keeps the smallest set of top tokens whose mass reaches top_p
        cut[t] = int((torch.cumsum(p, 0) < top_p).sum()) + 1 if top_p < 1 else None
    return {"tokens": tokens, "probs": probs, "cut": cut}


def probability_band(p: float) -> str:
    """The band (a label) that p falls in; tabs/decoding_views.py gives each band its colour."""
    for limit, label in ((0.9, "p ≥ 0.9"), (0.5, "0.5 – 0.9"), (0.2, "0.2 – 0.5"), (0.05, "0.05 – 0.2")):
        if p >= limit:
            return label
    return "p < 0.05"

"""Choosing each row's next token on its own, so a request's answer does not depend on its batch.

`generate()` samples every row of a batch from torch's process-wide RNG, so a row's draws would
depend on which other requests shared its steps. Here each sampled request owns a
`torch.Generator` seeded with its seed, and its logits go through transformers' own
LogitsProcessors (temperature, top-k, top-p, in `generate()`'s order) one row at a time; greedy
rows take the argmax. The same (prompt, seed) therefore draws the same random numbers whatever
runs beside it.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from models.generation.requests import Sampling


def logits_processors(sampling: Sampling) -> LogitsProcessorList:
    """The warpers `generate(do_sample=True, temperature=..., top_k=..., top_p=...)` would apply."""
    processors = LogitsProcessorList()
    if sampling.greedy:
        return processors
    if sampling.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(sampling.temperature))
    if sampling.top_k:
        processors.append(TopKLogitsWarper(top_k=sampling.top_k))
    if sampling.top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=sampling.top_p))
    return processors


class RowSampler:
    """One request's token choice: argmax, or a draw from its own seeded generator."""

    def __init__(self, sampling: Sampling):
        self.greedy = sampling.greedy
        self.processors = logits_processors(sampling)
        self.generator = None if self.greedy else torch.Generator().manual_seed(int(sampling.seed))

    def __call__(self, token_ids: list[int], scores: torch.Tensor) -> int:
        """Next token from this row's fp32 logits `scores` [vocab]; `token_ids` is the row's text so far
        (prompt + answer), which processors such as penalties read."""
        if self.greedy:
            return int(torch.argmax(scores))
        ids = torch.tensor([token_ids], dtype=torch.long)
        scores = self.processors(ids, scores.unsqueeze(0))
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, num_samples=1, generator=self.generator))

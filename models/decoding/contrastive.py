"""Contrastive search (Su et al., 2022), implemented here because transformers 5 moved it to the hub.

At each step the k most likely tokens are candidates; each one is scored

    (1 - alpha) * p(v | context) - alpha * max_j cos(h_v, h_j)

where h_v is the model's last hidden state after appending v and h_j are the last hidden
states of every context token (prompt included). The second term, the *degeneration
penalty*, punishes a token whose representation repeats something already said. The k
candidates run as one batch on a copy of the KV cache; the winner's cache row is kept, and
its logits are the next step's distribution, so each step costs one batched forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass
class ContrastiveCandidate:
    token_id: int
    prob: float
    max_similarity: float  # the degeneration penalty
    score: float


@dataclass
class ContrastiveStep:
    token_id: int
    probs: list  # distributions (V,) after each processing stage; the last one gives p(v)
    candidates: list[ContrastiveCandidate]


def _softmax_only(input_ids, logits):
    return [torch.softmax(logits, -1)[0]]


def contrastive_scores(probs: torch.Tensor, cand_hidden: torch.Tensor, context_hidden: torch.Tensor,
                       penalty_alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, max cosine similarity) of k candidates: probs (k,), cand_hidden (k,d), context (T,d)."""
    cand = torch.nn.functional.normalize(cand_hidden, dim=-1)
    ctx = torch.nn.functional.normalize(context_hidden, dim=-1)
    max_sim = (cand @ ctx.T).max(dim=-1).values
    return (1 - penalty_alpha) * probs - penalty_alpha * max_sim, max_sim


def contrastive_steps(model, input_ids: torch.Tensor, *, penalty_alpha: float, top_k: int,
                      max_new_tokens: int, stop_ids: set[int],
                      process: Callable[[torch.Tensor, torch.Tensor], list] = _softmax_only,
                      ) -> Iterator[ContrastiveStep]:
    """Yield one `ContrastiveStep` per generated token (batch of one prompt).

    `process(input_ids, logits)` returns the distributions after each logits processor
    (penalties); the last one is the p(v) that the score uses, as in transformers' version.
    """
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        out = model(input_ids=input_ids, past_key_values=cache, use_cache=True, output_hidden_states=True,
                    logits_to_keep=1)
        context_hidden = out.hidden_states[-1][0]  # (T, d)
        logits = out.logits[:, -1].float()
    for _ in range(max_new_tokens):
        with torch.inference_mode():
            probs = process(input_ids, logits)
            top_probs, top_ids = torch.topk(probs[-1], top_k)
            cache.batch_repeat_interleave(top_k)
            cand = model(input_ids=top_ids[:, None], past_key_values=cache, use_cache=True,
                         output_hidden_states=True)
            cand_hidden = cand.hidden_states[-1][:, -1]  # (k, d)
            scores, max_sim = contrastive_scores(top_probs, cand_hidden, context_hidden, penalty_alpha)
            best = int(torch.argmax(scores))
            cache.batch_select_indices(torch.tensor([best]))
            token_id = int(top_ids[best])
            context_hidden = torch.cat([context_hidden, cand_hidden[best:best + 1]])
            logits = cand.logits[best:best + 1, -1].float()
            input_ids = torch.cat([input_ids, torch.tensor([[token_id]])], dim=-1)
            candidates = [ContrastiveCandidate(int(i), float(p), float(s), float(sc))
                          for i, p, s, sc in zip(top_ids, top_probs, max_sim, scores, strict=False)]
        yield ContrastiveStep(token_id, probs, candidates)
        if token_id in stop_ids:
            return

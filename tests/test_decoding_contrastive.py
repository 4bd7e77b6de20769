"""Contrastive search checked against its definition, computed the slow way (no KV cache)."""

from __future__ import annotations

import pytest
import torch

from models.decoding.contrastive import contrastive_steps
from models.decoding.steps import CONTRASTIVE, GREEDY, DecodeConfig, encode_prompt, generate_text, normalize

PROMPT = "My favourite food is"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_step(model, ids: torch.Tensor, alpha: float, k: int) -> tuple[int, list[float]]:
    """One step by the paper's formula: full forward passes, cosine against every context state."""
    with torch.inference_mode():
        out = model(input_ids=ids, output_hidden_states=True)
        probs = torch.softmax(out.logits[0, -1].float(), -1)
        context = out.hidden_states[-1][0]
        top_p, top_ids = torch.topk(probs, k)
        scores = []
        for p, v in zip(top_p, top_ids, strict=True):
            extended = torch.cat([ids, v.view(1, 1)], -1)
            h_v = model(input_ids=extended, output_hidden_states=True).hidden_states[-1][0, -1]
            sim = torch.nn.functional.cosine_similarity(h_v[None], context, dim=-1).max()
            scores.append(float((1 - alpha) * p - alpha * sim))
    return int(top_ids[int(torch.tensor(scores).argmax())]), scores


def test_contrastive_matches_definition(lm):
    ids = encode_prompt(lm.tokenizer, PROMPT, False)
    steps = list(contrastive_steps(lm.model, ids, penalty_alpha=0.6, top_k=4, max_new_tokens=5, stop_ids=set()))
    assert len(steps) == 5
    for step in steps:
        token, scores = reference_step(lm.model, ids, 0.6, 4)
        assert step.token_id == token
        assert torch.allclose(torch.tensor([c.score for c in step.candidates]), torch.tensor(scores), atol=1e-4)
        ids = torch.cat([ids, torch.tensor([[token]])], -1)


def test_contrastive_differs_from_greedy_and_alpha_zero_is_greedy(lm):
    cfg = DecodeConfig(strategy=CONTRASTIVE, penalty_alpha=0.6, contrastive_k=4, max_new_tokens=25,
                       chat_template=False)
    contrastive, steps, _ = generate_text(lm, "I like cats. I like cats. I like", cfg)
    greedy, _, _ = generate_text(lm, "I like cats. I like cats. I like", DecodeConfig(
        strategy=GREEDY, max_new_tokens=25, chat_template=False))
    assert contrastive != greedy
    assert all(s.contrastive and sum(c["chosen"] for c in s.contrastive) == 1 for s in steps)
    mapped, notes = normalize(DecodeConfig(strategy=CONTRASTIVE, penalty_alpha=0.0))
    assert mapped.strategy == GREEDY and notes

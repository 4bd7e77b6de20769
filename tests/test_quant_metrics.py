"""Quantization metrics and schemes on the real embedded models (SmolLM2, all-MiniLM-L6-v2)."""

from __future__ import annotations

import math

import pytest
import torch

from models.quant import metrics as qm
from models.quant import run
from models.quant import schemes as qs
from models.registry import CHAT, ENCODER


@pytest.fixture(scope="module")
def reference(registry):
    """(ids [T], fp32 logits [T, V]) of the bundled reference text, cached by the registry."""
    ids, logits = run._chat_reference_logits(registry, qs.FULL)
    return ids[0], logits


def test_perplexity_equals_direct_computation(reference):
    ids, logits = reference
    nll = []
    for t in range(len(ids) - 1):  # one position at a time, in float64
        row = logits[t].double()
        nll.append(float(torch.logsumexp(row, 0) - row[ids[t + 1]]))
    direct = math.exp(sum(nll) / len(nll))
    assert qm.perplexity(logits, ids) == pytest.approx(direct, rel=1e-4)
    assert 1.0 < direct < 1000.0  # a real language model on English text


def test_model_against_itself_has_zero_kl_and_full_agreement(registry, reference):
    ids, logits = reference
    same = qm.lm_quality(logits, logits.clone(), ids)
    assert same["mean_kl"] == 0.0 and same["max_kl"] == 0.0
    assert same["top1_agreement_pct"] == 100.0
    assert same["positions"] == len(ids) - 1


def test_kl_matches_torch_and_is_positive_for_int8(registry, reference):
    ids, base = reference
    quant = run.logits_of(qs.quantized(registry, CHAT, "int8-dynamic").model, ids[None])
    base_lp, quant_lp = qm.log_probs(base), qm.log_probs(quant)
    kl = qm.kl_per_position(base_lp, quant_lp)
    expected = torch.nn.functional.kl_div(quant_lp, base_lp, log_target=True, reduction="none").sum(-1)
    assert torch.allclose(kl, expected.clamp_min(0), atol=1e-5)
    assert (kl >= 0).all() and kl.mean() > 1e-3  # int8 really changes the distribution
    quality = run.chat_quality(registry, "int8-dynamic")
    assert 0 < quality["top1_agreement_pct"] < 100


@pytest.mark.parametrize("model_key", [CHAT, ENCODER])
def test_quantized_layers_serialize_below_half_of_fp32(registry, model_key):
    full = qs.full(registry, model_key)
    for scheme in qs.schemes_for(model_key):
        built = qs.quantized(registry, model_key, scheme.key)
        assert built.breakdown["linear layers"] < 0.5 * full.breakdown["linear layers"], scheme.key
        assert built.serialized_bytes < full.serialized_bytes
        assert built.build_seconds > 0


def test_untied_lm_head_is_accounted(registry):
    full = qs.full(registry, CHAT)
    int8 = qs.quantized(registry, CHAT, "int8-dynamic")
    assert full.lm_head_tied is True and "lm_head" not in full.breakdown
    assert int8.lm_head_tied is False and int8.breakdown["lm_head"] > 0
    # embeddings stay fp32 with Linear-only quantization
    assert int8.breakdown["embeddings"] == full.breakdown["embeddings"]


def test_serialized_size_is_what_torch_save_writes():
    state = {"a": torch.zeros(1000), "b": torch.zeros(10)}
    state["tied"] = state["a"]  # stored once
    size = qm.serialized_bytes(state)
    assert 4040 <= size < 4040 + 2000
    assert qm.size_breakdown({"embed.weight": state["a"], "lm_head.weight": state["a"]}) == {"embeddings": 4000}


def test_encoder_quality_noise_floor_and_onnx(registry):
    itself = run.encoder_quality(registry, qs.FULL)
    assert itself["mean_cosine"] == pytest.approx(1.0, abs=1e-6) and itself["overlap_at_k_pct"] == 100.0
    onnx = run.encoder_quality(registry, "onnx-int8")
    assert 0.97 < onnx["mean_cosine"] < 1.0
    assert onnx["overlap_at_k_pct"] >= 60.0


def test_first_divergence():
    assert run.first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert run.first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert run.first_divergence([1, 2], [1, 2, 3]) == 2


def test_charts_follow_the_table_order_without_a_model():
    import pandas as pd

    from tabs.quantized import charts

    table = pd.DataFrame([{"scheme": "fp32 (full)", "size (MB)": 538.2, "tokens/s": 20.0, "TTFT (ms)": 90.0},
                          {"scheme": "int8", "size (MB)": 251.5, "tokens/s": "", "TTFT (ms)": 60.0}])
    size, speed, ttft = charts(table)
    assert size.value["data"] == [["fp32 (full)", 538.2], ["int8", 251.5]]
    assert size.sort == ["fp32 (full)", "int8"]  # table order, not alphabetical
    assert speed.value["data"] == [["fp32 (full)", 20.0]]  # a blank cell is left out, not drawn as 0
    assert ttft.value["data"][1] == ["int8", 60.0]
    assert charts(pd.DataFrame()) == (None, None, None)

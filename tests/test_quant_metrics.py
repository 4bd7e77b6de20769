"""Quantization metrics and schemes on the real embedded models (SmolLM2, all-MiniLM-L6-v2)."""

from __future__ import annotations

import math

import pytest
import torch

from models.quant import compare, run
from models.quant import metrics as qm
from models.quant import schemes as qs
from models.quant.cache import QuantCache
from models.quant.report import CostTable
from models.registry import CHAT, ENCODER


@pytest.fixture(scope="module")
def cache(registry):
    """Quantized builds, reference logits and vectors of the session's models, for this module."""
    return QuantCache(registry)


@pytest.fixture(scope="module")
def reference(cache):
    """(ids [T], fp32 logits [T, V]) of the bundled reference text, cached by the QuantCache."""
    ids, logits = run.chat_reference_logits(cache, qs.FULL)
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


def test_model_against_itself_has_zero_kl_and_full_agreement(reference):
    ids, logits = reference
    same = qm.lm_quality(logits, logits.clone(), ids)
    assert same["mean_kl"] == 0.0 and same["max_kl"] == 0.0
    assert same["top1_agreement_pct"] == 100.0
    assert same["positions"] == len(ids) - 1


def test_kl_matches_torch_and_is_positive_for_int8(cache, reference):
    ids, base = reference
    quant = run.logits_of(qs.quantized(cache, CHAT, "int8-dynamic").model, ids[None])
    base_lp, quant_lp = qm.log_probs(base), qm.log_probs(quant)
    kl = qm.kl_per_position(base_lp, quant_lp)
    expected = torch.nn.functional.kl_div(quant_lp, base_lp, log_target=True, reduction="none").sum(-1)
    assert torch.allclose(kl, expected.clamp_min(0), atol=1e-5)
    assert (kl >= 0).all() and kl.mean() > 1e-3  # int8 really changes the distribution
    quality = run.chat_quality(cache, "int8-dynamic")
    assert 0 < quality["top1_agreement_pct"] < 100


@pytest.mark.parametrize("model_key", [CHAT, ENCODER])
def test_quantized_layers_serialize_below_half_of_fp32(cache, model_key):
    full = qs.full(cache, model_key)
    for scheme in qs.schemes_for(model_key):
        built = qs.quantized(cache, model_key, scheme.key)
        assert built.breakdown["linear layers"] < 0.5 * full.breakdown["linear layers"], scheme.key
        assert built.serialized_bytes < full.serialized_bytes
        assert built.build_seconds > 0


def test_untied_lm_head_is_accounted(cache):
    full = qs.full(cache, CHAT)
    int8 = qs.quantized(cache, CHAT, "int8-dynamic")
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


def test_encoder_quality_noise_floor_and_onnx(cache):
    itself = run.encoder_quality(cache, qs.FULL)
    assert itself["mean_cosine"] == pytest.approx(1.0, abs=1e-6) and itself["overlap_at_k_pct"] == 100.0
    onnx = run.encoder_quality(cache, "onnx-int8")
    assert 0.97 < onnx["mean_cosine"] < 1.0
    assert onnx["overlap_at_k_pct"] >= 60.0
    # Its onnxruntime session has the model job's share of the CPU quota, as torch has (0 would be
    # onnxruntime's default: one thread per physical core of the host).
    from models.hardware import intra_op_threads

    options = qs.quantized(cache, ENCODER, "onnx-int8").model.session.get_session_options()
    assert options.intra_op_num_threads == intra_op_threads(cache.registry.settings) >= 1


def test_first_divergence():
    assert compare.first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert compare.first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert compare.first_divergence([1, 2], [1, 2, 3]) == 2


def test_charts_follow_the_row_order_without_a_model():
    from tabs.quantized import charts

    rows = [{"scheme": "fp32 (full)", "size (MB)": 538.2, "tokens/s": 20.0, "TTFT (ms)": 90.0},
            {"scheme": "int8", "size (MB)": 251.5, "tokens/s": None, "TTFT (ms)": 60.0}]
    size, speed, ttft = charts(CostTable(rows, "TTFT (ms)"))
    assert size.value["data"] == [["fp32 (full)", 538.2], ["int8", 251.5]]
    assert size.sort == ["fp32 (full)", "int8"]  # row order, not alphabetical
    assert speed.value["data"] == [["fp32 (full)", 20.0]]  # a missing value is left out, not drawn as 0
    assert ttft.value["data"][1] == ["int8", 60.0]
    encoder = charts(CostTable([{**rows[0], "prompt latency (ms)": 7.5}], "prompt latency (ms)"))
    assert encoder[2].value["data"] == [["fp32 (full)", 7.5]]  # the latency column the rows name
    assert charts(None) == (None, None, None) and charts(CostTable([], "TTFT (ms)")) == (None, None, None)


def test_a_bad_request_is_refused_before_any_model_runs(cache):
    for prompt, message in (("   ", "Type a prompt first"), ("word " * 1000, "keep it under")):
        with pytest.raises(ValueError, match=message):
            compare.side_by_side(cache, CHAT, "int8-dynamic", prompt, 4)
    with pytest.raises(ValueError, match="Unknown scheme"):
        compare.side_by_side(cache, CHAT, "onnx-int8", "hello", 4)
    with pytest.raises(ValueError, match="New tokens"):
        compare.side_by_side(cache, CHAT, "int8-dynamic", "hello", 0)


def test_chat_side_by_side_streams_both_models_then_the_strip(cache):
    steps = list(compare.side_by_side(cache, CHAT, "int8-dynamic", "  Name three colours.  ", 4))
    *streaming, last = steps
    assert streaming and not any(s.done or s.strip for s in streaming)
    assert [max(len(s.full_tokens), len(s.quant_tokens)) for s in streaming] == list(range(1, len(streaming) + 1))
    assert last.done and last.label == qs.scheme(CHAT, "int8-dynamic").label
    assert [r["token"] for r in last.strip] == list(last.full_tokens)
    assert all(r["kl"] >= 0 for r in last.strip)
    at = last.diverge_at
    assert at is None or last.full_tokens[:at] == last.quant_tokens[:at]
    assert last.weights.gguf_file is None or last.weights.gguf_file.endswith(".gguf")


def test_per_token_int8_is_near_lossless_where_naive_int8_is_not(cache):
    naive = run.chat_kld_report(cache, "int8-dynamic")
    per_token = run.chat_kld_report(cache, "int8-per-token")
    assert per_token["mean_kl"] <= 0.1 < 0.5 < naive["mean_kl"]
    assert per_token["same_top1_pct"] > naive["same_top1_pct"] + 20
    kept = [n for n, m in qs.quantized(cache, CHAT, "int8-per-token").model.named_modules()
            if type(m) is torch.nn.Linear]
    assert kept and all("down_proj" in n for n in kept)  # the massive-activation layers, found by calibration

"""GGUF formats, llama.cpp's KL statistics, the workbench and per-token int8: no model needed.

The round trips use the `gguf` package (the formats' reference code in NumPy); the bounds are the
block layouts' own (ggml-common.h): half a step where a value lands inside the grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.quant import gguf_formats as gf
from models.quant import tensors as qt
from models.quant.int8_tokens import PerTokenInt8Linear
from models.quant.kld import kld_report
from models.quant.workbench import Workbench

RNG = np.random.default_rng(0)


def blocks(n_blocks: int, size: int, low: float, high: float) -> np.ndarray:
    """Random blocks whose minimum and maximum are exactly `low` and `high` (fp16-exact scales)."""
    x = RNG.uniform(low, high, size=(n_blocks, size)).astype(np.float32)
    x[:, 0], x[:, 1] = low, high
    return x


@pytest.mark.parametrize("name, bits", [("BF16", 16.0), ("Q8_0", 8.5), ("Q5_1", 6.0), ("Q5_0", 5.5), ("Q4_1", 5.0),
                                        ("Q4_0", 4.5), ("MXFP4", 4.25), ("TQ2_0", 2.0625), ("TQ1_0", 1.6875)])
def test_bits_per_weight_follow_the_block_layout(name, bits):
    fmt = gf.format_named(name)
    assert fmt.bits_per_weight == bits
    packed = gf.quantize(RNG.standard_normal((4, 512)).astype(np.float32), fmt)
    assert packed.nbytes * 8 / (4 * 512) == bits == gf.stored_bytes((4, 512), fmt) * 8 / (4 * 512)


def test_round_trips_stay_within_the_documented_error():
    # Q8_0: d = absmax / 127 per 32 values, error <= d / 2 (absmax 127/64: d = 1/64, exact in fp16)
    x = blocks(64, 32, -127 / 64, 127 / 64)
    assert np.abs(gf.round_trip(x, gf.FORMATS["Q8_0"]) - x).max() <= (1 / 64) / 2 + 1e-6
    # Q4_1 / Q5_1: d = (max - min) / 15 (31), m = min; error <= d / 2
    x = blocks(64, 32, -1.0, 0.875)
    assert np.abs(gf.round_trip(x, gf.FORMATS["Q4_1"]) - x).max() <= (1.875 / 15) / 2 + 1e-6
    x = blocks(64, 32, -1.0, 2.875)
    assert np.abs(gf.round_trip(x, gf.FORMATS["Q5_1"]) - x).max() <= (3.875 / 31) / 2 + 1e-6
    # Q4_0 / Q5_0: d = max / -8 (-16), where max is the largest magnitude; the far end may clip one step
    x = blocks(64, 32, -0.5, 1.0)
    err = np.abs(gf.round_trip(x, gf.FORMATS["Q4_0"]) - x)
    assert err.max() <= 1 / 8 + 1e-6 and err[:, 2:][x[:, 2:] < 7 / 8].max() <= 1 / 16 + 1e-6
    assert np.abs(gf.round_trip(x, gf.FORMATS["Q5_0"]) - x).max() <= 1 / 16 + 1e-6
    # BF16 keeps 8 significant bits (7 stored): relative error <= half a unit of the 8th, 2^-8
    x = RNG.standard_normal((8, 64)).astype(np.float32)
    assert (np.abs(gf.round_trip(x, gf.FORMATS["BF16"]) - x) <= np.abs(x) * 2.0 ** -8).all()
    # ternary: every value becomes -d, 0 or d with d = absmax of its 256-block; error <= d / 2
    x = blocks(4, 256, -1.0, 1.0)
    for name in ("TQ2_0", "TQ1_0"):
        y = gf.round_trip(x, gf.FORMATS[name])
        assert set(np.unique(y)) <= {-1.0, 0.0, 1.0} and np.abs(y - x).max() <= 0.5 + 1e-6
    assert np.array_equal(gf.round_trip(x, gf.FORMATS["TQ2_0"]), gf.round_trip(x, gf.FORMATS["TQ1_0"]))
    # MXFP4: e2m1 values (0, ±0.5 ... ±6) times one power of two per block of 32
    y = gf.round_trip(blocks(8, 32, -3.0, 3.0), gf.FORMATS["MXFP4"]).reshape(8, 32)
    grid = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0}
    for row in y:
        scale = 2.0 ** np.floor(np.log2(np.abs(row).max() / 6))
        assert {abs(v) for v in (row / scale).tolist()} <= grid | {v * 2 for v in grid} | {v / 2 for v in grid}


def test_rows_that_are_not_whole_blocks_take_llama_cpps_fallback():
    tq1 = gf.FORMATS["TQ1_0"]
    assert gf.storage_format(tq1, 1536) is tq1  # SmolLM2's MLP down-projection rows
    assert gf.storage_format(tq1, 576) is gf.Q4_0 and gf.storage_format(tq1, 384) is gf.Q4_0
    assert gf.storage_format(gf.Q8_0, 576) is gf.Q8_0
    assert gf.storage_format(gf.Q4_0, 100) is gf.F16  # not even 32-blocks fit
    with pytest.raises(ValueError, match="Unknown GGUF format"):
        gf.format_named("<script>")


def test_groups_and_the_ladder_recipe():
    shapes = {"model.embed_tokens.weight": (49152, 576), "model.layers.0.self_attn.q_proj.weight": (576, 576),
              "model.layers.0.mlp.down_proj.weight": (576, 1536), "model.layers.0.input_layernorm.weight": (576,),
              "encoder.layer.0.attention.output.dense.weight": (384, 384),
              "encoder.layer.0.output.dense.weight": (384, 1536),
              "embeddings.position_embeddings.weight": (512, 384)}
    assert [qt.group_of(n) for n in shapes] == ["embeddings", "q_proj", "down_proj", None, "o_proj",
                                                "down_proj", None]
    tq1 = gf.FORMATS["TQ1_0"]
    plan = qt.ladder_plan(shapes, tq1)
    assert plan["model.embed_tokens.weight"] is gf.Q8_0  # llama.cpp's tied output: Q6_K -> Q8_0
    assert plan["model.layers.0.self_attn.q_proj.weight"] is gf.Q4_0  # 576 is not a multiple of 256
    assert plan["model.layers.0.mlp.down_proj.weight"] is tq1
    assert plan["model.layers.0.input_layernorm.weight"] is None
    summary = qt.summary(plan, shapes)
    assert summary["stored_as"] == {"embeddings": ["Q8_0"], "q_proj": ["Q4_0"], "down_proj": ["TQ1_0"],
                                    "o_proj": ["Q4_0"]}
    only = qt.group_plan(shapes, gf.Q8_0, "q_proj")
    assert [n for n, f in only.items() if f] == ["model.layers.0.self_attn.q_proj.weight"]
    assert qt.all_but_plan(shapes, gf.Q8_0, {"embeddings"})["model.embed_tokens.weight"] is None


def test_kld_report_follows_llama_cpps_definitions():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]))
    other = torch.log(torch.tensor([[0.5, 0.4, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]))
    ids = torch.tensor([0, 0, 1])  # logits[t] predict ids[t+1]: tokens 0 and 1
    same = kld_report(logits, logits, ids)
    assert same["mean_kl"] == 0 and same["dp_rms_pct"] == 0 and same["same_top1_pct"] == 100
    report = kld_report(logits, other, ids)
    kl0 = 0.7 * np.log(0.7 / 0.5) + 0.2 * np.log(0.2 / 0.4)
    assert report["mean_kl"] == pytest.approx(kl0 / 2, rel=1e-5) and report["kl_max"] == pytest.approx(kl0, rel=1e-5)
    assert report["dp_mean_pct"] == pytest.approx(100 * (0.5 - 0.7) / 2, rel=1e-5)  # p_quant - p_base
    assert report["perplexity"] == pytest.approx(np.exp(-(np.log(0.5) + np.log(0.8)) / 2), rel=1e-5)
    assert report["kl_p99"] == pytest.approx(np.percentile([kl0, 0.0], 99), rel=1e-5)  # linear interpolation


def test_the_workbench_never_touches_the_shared_model():
    torch.manual_seed(0)
    shared = torch.nn.Sequential(torch.nn.Embedding(10, 64), torch.nn.Linear(64, 256, bias=False))
    before = {n: p.detach().clone() for n, p in shared.named_parameters()}
    bench = Workbench(shared, threads=2)
    with bench.lock:
        bench.apply({"1.weight": gf.FORMATS["Q4_0"]})
        moved = bench.module[1].weight.detach().clone()
        bench.apply({"1.weight": gf.FORMATS["Q4_0"]})  # memo: the same values again
        assert torch.equal(bench.module[1].weight, moved)
        bench.reset()
    assert not torch.equal(moved, before["1.weight"])
    assert all(torch.equal(p, before[n]) for n, p in shared.named_parameters())
    assert torch.equal(bench.module[1].weight, before["1.weight"])


def test_per_token_int8_survives_a_massive_activation():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 64)
    x = torch.randn(8, 256)
    x[0, 3] = 3000.0  # a first token with a massive activation, as in SmolLM2's down-projections
    quantized = torch.ao.nn.quantized.dynamic.Linear(256, 64, bias_=False, dtype=torch.qint8)
    scales = linear.weight.detach().abs().amax(1) / 127
    zero_points = torch.zeros(64, dtype=torch.long)
    quantized.set_weight_bias(torch.quantize_per_channel(linear.weight.detach(), scales, zero_points, 0, torch.qint8),
                              None)
    naive = quantized(x) + linear.bias
    per_token = PerTokenInt8Linear(quantized, linear.bias)(x)
    exact = linear(x)

    def error(y):  # relative error of the tokens after the massive one
        return ((y - exact)[1:].norm(dim=-1) / exact[1:].norm(dim=-1)).max().item()

    assert error(per_token) < 0.05 < 0.5 < error(naive)  # the other tokens: near exact vs drowned
    one = x[3:4]
    assert torch.equal(PerTokenInt8Linear(quantized, None)(one), quantized(one))  # decoding: the kernel as is

"""The Quantized tab's tables as plain rows: cost (size, memory, speed), quality, bytes, kernels.

Every table has fp32 as the baseline and a noise-floor row (fp32 against itself) so a
difference can be told from measurement noise. Rows are lists of dicts (column -> value).
The request is checked here, once (models.quant.inputs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models import hardware
from models.chat import eos_ids
from models.quant import run
from models.quant import schemes as qs
from models.quant.cache import QuantCache
from models.quant.compare import chat_prompt_ids
from models.quant.inputs import check_request
from models.registry import CHAT

MB = 1e6
PARTS = ("embeddings", "linear layers", "lm_head", "norms & other")


@dataclass(frozen=True)
class CostTable:
    """The cost rows, fp32 first and the noise floor second, and which column holds the latency."""

    rows: list[dict]
    latency: str  # "TTFT (ms)" for the causal LM, "prompt latency (ms)" for the encoder


def _ratio(value, base):
    return round(value / base, 2) if value is not None and base else None


def _row(built: qs.Built, timing: dict, base: qs.Built, base_timing: dict, speed_name: str) -> dict:
    return {
        "scheme": built.label,
        "size (MB)": round(built.serialized_bytes / MB, 1),
        "size vs fp32": _ratio(built.serialized_bytes, base.serialized_bytes),
        "memory added (MB)": None if built.rss_added_bytes is None else round(built.rss_added_bytes / MB),
        "build (s)": None if built.build_seconds is None else round(built.build_seconds, 1),
        speed_name: round(timing["ttft_s"] * 1000, 1),
        "tokens/s": None if timing["tokens_per_s"] is None else round(timing["tokens_per_s"], 1),
        "speed-up": _ratio(timing["tokens_per_s"], base_timing["tokens_per_s"]),
    }


def compare_table(cache: QuantCache, model_key: str, prompt: str, max_new: int = 16,
                  progress: Callable[[float, str], None] | None = None) -> CostTable:
    """Size, memory, build time, first-token latency, tokens/s and speed-up of fp32 (twice:
    the second run is the noise floor) and every scheme, on this prompt."""
    prompt, max_new = check_request(model_key, prompt, max_new)
    report = progress or (lambda fraction, text: None)
    base = qs.full(cache, model_key)
    if model_key == CHAT:
        lm = cache.registry.chat_model()
        ids, eos = chat_prompt_ids(cache, prompt), eos_ids(lm.tokenizer, lm.model)

        def timing(model):
            return run.timed_generation(model, ids, max_new, eos)
        speed_name = "TTFT (ms)"
    else:
        sentences, _ = run.encoder_eval()

        def timing(model):
            return run.encoder_timing(model, prompt, sentences)
        speed_name = "prompt latency (ms)"
    report(0.05, "timing fp32")
    first, second = timing(base.model), timing(base.model)
    rows = [_row(base, first, base, first, speed_name),
            {**_row(base, second, base, first, speed_name), "scheme": run.NOISE, "build (s)": None}]
    schemes = qs.schemes_for(model_key)
    for i, scheme in enumerate(schemes):
        share = 0.1 + 0.85 * i / len(schemes)
        built = qs.quantized(cache, model_key, scheme.key,
                             lambda f, text, share=share: report(share + f * 0.85 / len(schemes), text))
        report(share + 0.4 / len(schemes), f"timing {scheme.label}")
        rows.append(_row(built, timing(built.model), base, first, speed_name))
    return CostTable(rows, speed_name)


def quality_rows(cache: QuantCache, model_key: str) -> list[dict]:
    """Quality on the bundled reference set (cached per process), noise floor second."""
    keys = [qs.FULL, run.NOISE] + [s.key for s in qs.schemes_for(model_key)]
    labels = {qs.FULL: "fp32 (full)", run.NOISE: "fp32, other thread count (noise floor)",
              **{s.key: s.label for s in qs.schemes_for(model_key)}}
    rows = []
    for key in keys:
        if model_key == CHAT:  # llama.cpp's --kl-divergence statistics (models.quant.kld)
            q = run.chat_kld_report(cache, key)
            rows.append({"scheme": labels[key], "perplexity": round(q["perplexity"], 3),
                         "mean KL (nats)": float(f"{q['mean_kl']:.3g}"),
                         "KL p99": float(f"{q['kl_p99']:.3g}"), "max KL": float(f"{q['kl_max']:.3g}"),
                         "Δp mean (%)": round(q["dp_mean_pct"], 2), "Δp RMS (%)": round(q["dp_rms_pct"], 2),
                         "same top-1 (%)": round(q["same_top1_pct"], 1), "positions": q["positions"]})
        else:
            q = run.encoder_quality(cache, key)
            rows.append({"scheme": labels[key], "mean cosine": round(q["mean_cosine"], 5),
                         f"overlap@{q['k']} (%)": round(q["overlap_at_k_pct"], 1),
                         "sentences": q["sentences"], "queries": q["queries"]})
    return rows


def bytes_rows(cache: QuantCache, model_key: str) -> list[dict]:
    """Where the bytes went: MB per part for fp32 and each built scheme, the bytes a quantized
    lm_head adds when it no longer shares the embedding matrix, and the best possible size
    (every weight at the scheme's bit width)."""
    base = qs.full(cache, model_key)
    entries = [(base, 32)] + [(qs.quantized(cache, model_key, s.key), s.bits) for s in qs.schemes_for(model_key)]
    rows = []
    for built, bits in entries:
        row = {"scheme": built.label, **{p: round(built.breakdown.get(p, 0) / MB, 1) for p in PARTS}}
        untied = base.lm_head_tied and built.lm_head_tied is False
        row["untied lm_head copy (MB)"] = round(built.breakdown.get("lm_head", 0) / MB, 1) if untied else 0.0
        row["total (MB)"] = round(built.serialized_bytes / MB, 1)
        row["best possible (MB)"] = round(base.serialized_bytes * bits / 32 / MB, 1)
        rows.append(row)
    return rows


def bytes_long(rows: list[dict]) -> list[dict]:
    """The same numbers in long form (scheme, part, MB) for a stacked bar chart."""
    return [{"scheme": r["scheme"], "part": p, "MB": r[p]} for r in rows for p in PARTS if r[p]]


def kernel_rows(cache: QuantCache, model_key: str) -> list[dict]:
    """Which matmul kernel each model really ran, from the profiler or the ONNX graph (cached)."""

    def measure(built: qs.Built) -> str:
        def profile() -> str:
            if isinstance(built.model, qs.OrtEncoder):
                found = hardware.onnx_kernels(built.model.path)
                return ", ".join(f"{op} x{n}" for op, n in found)
            if model_key == CHAT:
                module = built.model
                ids = cache.registry.chat_model().tokenizer("Kernels, please.", return_tensors="pt").input_ids
            else:
                module = built.model.st[0].auto_model
                ids = dict(built.model.tokenizer(["Kernels, please."], return_tensors="pt"))
            found = hardware.torch_kernels(module, ids)
            return ", ".join(f"{name} {ms} ms" for name, ms in found)

        return cache.kernels.get((model_key, built.key), profile)

    entries = [qs.full(cache, model_key)] + [qs.quantized(cache, model_key, s.key)
                                               for s in qs.schemes_for(model_key)]
    return [{"scheme": b.label, "kernels (one forward pass)": measure(b)} for b in entries]

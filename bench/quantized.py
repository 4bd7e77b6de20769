"""Benchmark of the Quantized vs full tab: the cost and quality tables for both models, one run.

Every figure is a ratio to fp32 measured in the same process, minutes apart at most:
- size_ratio: serialized weight bytes / fp32 (`torch.save`, or the .onnx file);
- speedup: decoding tokens/s / fp32 (causal LM, greedy, KV cache, NEW_TOKENS tokens), or
  corpus-embedding tokens/s / fp32 (encoder, 30 bundled sentences);
- ttft_ratio: time to first token (encoder: time to embed one query) / fp32;
- quality: perplexity ratio, mean KL (nats) and same-top-1 % on the bundled reference text
  (llama.cpp's definitions), or mean cosine and overlap@3 for the encoder;
- noise: the same figures for fp32 timed a second time and recomputed on another thread count; a
  scheme's speed-up inside [1 - noise, 1 + noise] is not a real difference;
- int8_speed: decoding tokens/s of fp32, the naive int8 and the per-token int8, measured
  alternately (REPEATS rounds, median) in one run, with the two int8 schemes' ratios to fp32 and to
  each other: the per-token scheme's goal is mean KL <= 0.1 at >= 1.3x fp32;
- ladder.<model>: the whole GGUF ladder computed from empty records (a temporary records folder):
  wall and CPU seconds, each format's seconds, the process's peak RSS and what the ladder added,
  and each format's bits per weight, file MB and quality (mean KL / KL p99 / same top-1, or cosine);
- load_average_1min: the machine's load (2 cores shared with other work) when measured.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench.in_process import offline_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PROMPT = "Explain in two sentences what a lighthouse keeper does."
NEW_TOKENS = 32
REPEATS = 3


def model_figures(cache, model_key: str) -> dict:
    from models.quant import report

    start = time.perf_counter()
    table = report.compare_table(cache, model_key, PROMPT, NEW_TOKENS)
    quality = report.quality_rows(cache, model_key)
    cost, ms = table.rows, table.latency
    base, noise = cost[0], cost[1]
    figures = {"fp32_size_mb": base["size (MB)"], "fp32_tokens_per_s": base["tokens/s"],
               "noise": {"speedup": noise["speed-up"], "ttft_ratio": round(noise[ms] / base[ms], 2),
                         **{k: v for k, v in quality[1].items() if k != "scheme"}},
               "schemes": {}}
    for row, q in zip(cost[2:], quality[2:], strict=True):
        entry = {"size_ratio": row["size vs fp32"], "speedup": row["speed-up"],
                 "ttft_ratio": round(row[ms] / base[ms], 2), "memory_added_mb": row["memory added (MB)"],
                 "build_s": row["build (s)"]}
        if "perplexity" in q:
            entry.update(ppl_ratio=round(q["perplexity"] / quality[0]["perplexity"], 3),
                         mean_kl=q["mean KL (nats)"], same_top1_pct=q["same top-1 (%)"])
        else:
            entry.update({k: v for k, v in q.items() if k not in ("scheme", "sentences", "queries")})
        figures["schemes"][row["scheme"]] = entry
    figures["seconds"] = round(time.perf_counter() - start, 1)
    return figures


def int8_speed(cache, repeats: int = REPEATS) -> dict:
    """Median decoding tokens/s of fp32, naive int8 and per-token int8, timed in alternation."""
    import statistics

    from models.chat import eos_ids
    from models.quant import run
    from models.quant import schemes as qs
    from models.registry import CHAT

    lm = cache.registry.chat_model()
    ids, eos = run.chat_ids(lm.tokenizer, PROMPT), eos_ids(lm.tokenizer, lm.model)
    models = {"fp32": lm.model, **{k: qs.quantized(cache, CHAT, k).model for k in ("int8-dynamic", "int8-per-token")}}
    speeds: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for key, model in models.items():
            speeds[key].append(run.timed_generation(model, ids, NEW_TOKENS, eos)["tokens_per_s"])
    median = {k: round(statistics.median(v), 2) for k, v in speeds.items()}
    quality = {k: run.chat_kld_report(cache, k) for k in ("int8-dynamic", "int8-per-token")}
    return {"tokens_per_s": median,
            "naive_vs_fp32": round(median["int8-dynamic"] / median["fp32"], 2),
            "per_token_vs_fp32": round(median["int8-per-token"] / median["fp32"], 2),
            "per_token_vs_naive": round(median["int8-per-token"] / median["int8-dynamic"], 2),
            "mean_kl": {k: round(q["mean_kl"], 4) for k, q in quality.items()},
            "kl_p99": {k: round(q["kl_p99"], 3) for k, q in quality.items()},
            "same_top1_pct": {k: round(q["same_top1_pct"], 1) for k, q in quality.items()},
            "threads": __import__("torch").get_num_threads()}


def ladder_figures(cache, model_key: str) -> dict:
    """The whole ladder of one model from empty records: time, memory and each format's row."""
    import resource
    import tempfile

    import psutil

    from models.quant import gguf_formats as gf
    from models.quant import ladder

    rss_before = psutil.Process().memory_info().rss
    with tempfile.TemporaryDirectory() as records:
        cache.records_dir = Path(records)
        wall, cpu = time.perf_counter(), time.process_time()
        rows = ladder.ladder_rows(cache, model_key, [f.name for f in gf.LADDER])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        cache.records_dir = None
    figures = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "rss_added_mb": round((psutil.Process().memory_info().rss - rss_before) / 1e6),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3)}
    for row in rows:
        keys = ("bits_per_weight", "file_bpw", "size_mb", "mean_kl", "kl_p99", "same_top1", "dp_rms_pct",
                "perplexity", "mean_cosine", "overlap_at_k", "seconds")
        figures[row["format"]] = {k: row[k] for k in keys if row.get(k) is not None}
    return figures


def main() -> dict:
    from models.quant.cache import QuantCache
    from models.registry import CHAT, ENCODER, ModelRegistry

    cache = QuantCache(ModelRegistry(offline_settings()))
    result = {"prompt": PROMPT, "new_tokens": NEW_TOKENS}
    for key in (CHAT, ENCODER):
        result[cache.registry.specs[key].display_name] = model_figures(cache, key)
    result["int8_speed"] = int8_speed(cache)
    for key in (CHAT, ENCODER):
        result["ladder"] = {**result.get("ladder", {}), cache.registry.specs[key].display_name:
                            ladder_figures(cache, key)}
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

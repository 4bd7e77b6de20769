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
- int8_keep_down_proj_fp32_ppl_ratio: perplexity ratio of the causal LM's int8 dynamic scheme with
  the MLP down-projections left in fp32 (the layers whose activation outliers int8 rounds worst),
  next to the full int8 scheme's ppl_ratio: what the tab's "why int8 hurts" note rests on;
- load_average_1min: the machine's load (2 cores shared with other work) when measured.
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PROMPT = "Explain in two sentences what a lighthouse keeper does."
NEW_TOKENS = 32


def _settings():
    from config import Settings

    base = Settings.from_env()
    return Settings(**{**base.__dict__, "offline": True, "warmup": False})


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


def int8_without_down_proj_ppl_ratio(cache) -> float:
    """Perplexity of int8 dynamic with every `down_proj` Linear kept fp32, over fp32's, on the reference text."""
    import copy
    import warnings

    import torch

    from models.quant import metrics as qm
    from models.quant import run
    from models.quant import schemes as qs

    ids, base = run.chat_reference_logits(cache, qs.FULL)
    model = copy.deepcopy(cache.registry.chat_model().model)
    spec = {name: torch.ao.quantization.per_channel_dynamic_qconfig for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and "down_proj" not in name}
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated; it still works
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    logits = run.logits_of(model.eval(), ids)
    return round(qm.perplexity(logits, ids[0]) / qm.perplexity(base, ids[0]), 3)


def main() -> dict:
    from models.quant.cache import QuantCache
    from models.registry import CHAT, ENCODER, ModelRegistry

    cache = QuantCache(ModelRegistry(_settings()))
    result = {"prompt": PROMPT, "new_tokens": NEW_TOKENS}
    for key in (CHAT, ENCODER):
        result[cache.registry.specs[key].display_name] = model_figures(cache, key)
    chat = result[cache.registry.specs[CHAT].display_name]
    chat["int8_keep_down_proj_fp32_ppl_ratio"] = int8_without_down_proj_ppl_ratio(cache)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

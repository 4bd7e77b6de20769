"""The GGUF ladder: the model's weights round-tripped through each llama.cpp format, and what it costs.

For each format, every weight matrix is stored as that format would store it and read back into
a private float32 copy of the model (fake quantization: the arithmetic stays float32, only the
weights carry the format's rounding), following llama-quantize's recipe (models.quant.tensors).
The copy then reads the bundled reference text, and its next-token distributions are compared
with the float32 model's using llama.cpp's `--kl-divergence` statistics (models.quant.kld); the
encoder is compared by embedding cosine and retrieval overlap. Bits per weight come from the
format's block layout and the file size from every tensor's stored bytes.

A row is computed on first request (with progress), then kept for the process and on disk
(QuantCache.measured), keyed by the baseline weights' files, the texts, the recipe and the
library versions. The baseline is whatever the registry loaded: offline, SmolLM2's float32
weights are themselves dequantized from the packaged Q4_1 GGUF (see `baseline_note`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import torch

from models.quant import compare, run
from models.quant import gguf_formats as gf
from models.quant import metrics as qm
from models.quant import schemes as qs
from models.quant import tensors as qt
from models.quant.cache import QuantCache
from models.quant.kld import kld_report
from models.quant.workbench import Workbench
from models.registry import CHAT, ENCODER

RECIPE_VERSION = 1  # bump when a recipe or a metric changes: records on disk are then recomputed
MB = 1e6
Progress = Callable[[float, str], None]


def check_model(model_key: str) -> str:
    if model_key not in (CHAT, ENCODER):
        raise ValueError(f"Choose the model: {CHAT!r} or {ENCODER!r}.")
    return model_key


def workbench(cache: QuantCache, model_key: str) -> Workbench:
    """The model's private float32 copy for GGUF experiments, made once per process."""

    def build() -> Workbench:
        shared = cache.registry.chat_model().model if model_key == CHAT else cache.registry.sentence_encoder()
        return Workbench(shared, threads=torch.get_num_threads())

    return cache.workbenches.get((model_key, "workbench"), build)


def depends_on(cache: QuantCache, model_key: str) -> dict:
    """Everything a measurement depends on: the baseline's files, the texts, recipe and versions."""
    source = cache.registry.resolve(model_key)
    files = []
    if source.is_local:
        for path in sorted(Path(source.location).rglob("*")):
            if path.suffix in (".safetensors", ".bin", ".gguf", ".json") and path.is_file():
                stat = path.stat()
                files.append([path.name, stat.st_size, stat.st_mtime_ns])
    texts = run.reference_text() + repr(run.encoder_eval())
    return {"model": model_key, "location": source.location, "files": files,
            "texts": hashlib.sha1(texts.encode()).hexdigest()[:16], "recipe": RECIPE_VERSION,
            "ref_tokens": run.REF_TOKENS, "gguf": version("gguf"), "torch": torch.__version__}


def evaluate(cache: QuantCache, model_key: str, module) -> dict:
    """Quality of a model (the workbench's copy) against float32 on the bundled texts."""
    if model_key == CHAT:
        ids, base = run.chat_reference_logits(cache, qs.FULL)
        return kld_report(base, run.logits_of(module, ids), ids[0])
    sentences, queries = run.encoder_eval()
    encoder = qs.TorchEncoder(module)
    vectors, query_vectors = encoder.embed(sentences), encoder.embed(queries)
    base_s, base_q = run.encoder_vectors(cache, qs.FULL)
    return {"mean_cosine": qm.mean_cosine(base_s, vectors),
            "overlap_at_k_pct": qm.overlap_at_k(qm.top_k(base_q, base_s, run.TOP_K),
                                                qm.top_k(query_vectors, vectors, run.TOP_K))}


def measure(cache: QuantCache, model_key: str, what: str, make_plan: Callable, progress: Progress) -> dict:
    """Apply the plan `make_plan(shapes)` to the workbench and evaluate it (cached: process + disk)."""

    def compute() -> dict:
        bench = workbench(cache, model_key)
        with bench.lock:
            start = time.perf_counter()
            plan = make_plan(bench.shapes)
            bench.apply(plan, lambda f, text: progress(0.85 * f, text))
            progress(0.9, f"{what}: reading the reference text")
            result = evaluate(cache, model_key, bench.module)
            return {**result, **qt.summary(plan, bench.shapes), "seconds": round(time.perf_counter() - start, 2)}

    return cache.measured((model_key, what), depends_on(cache, model_key), compute)


def table_row(name: str, bits: float, metrics: dict) -> dict:
    """One table row: the API's fields first, then llama.cpp's other statistics."""
    row = {"format": name, "bits_per_weight": round(bits, 4),
           "size_mb": round(metrics["size_bytes"] / MB, 1) if "size_bytes" in metrics else None,
           "file_bpw": round(metrics["size_bytes"] * 8 / metrics["weights"], 3) if "weights" in metrics else None}
    if "mean_kl" in metrics:
        row.update(perplexity=round(metrics["perplexity"], 3), mean_kl=float(f"{metrics['mean_kl']:.3g}"),
                   mean_kl_error=float(f"{metrics['mean_kl_error']:.2g}"), kl_p99=float(f"{metrics['kl_p99']:.3g}"),
                   kl_max=float(f"{metrics['kl_max']:.3g}"), same_top1=round(metrics["same_top1_pct"], 1),
                   dp_mean_pct=round(metrics["dp_mean_pct"], 2), dp_rms_pct=round(metrics["dp_rms_pct"], 2),
                   dp_p99_pct=round(metrics["dp_p99_pct"], 2))
    else:
        row.update(mean_cosine=round(metrics["mean_cosine"], 5),
                   overlap_at_k=round(metrics["overlap_at_k_pct"], 1))
    return row


def format_row(cache: QuantCache, model_key: str, fmt: gf.Format, progress: Progress | None = None) -> dict:
    """The ladder row of one format: bits, size, quality, what was stored as what, and the time."""
    report = progress or (lambda fraction, text: None)
    metrics = measure(cache, model_key, f"ladder:{fmt.name}", lambda shapes: qt.ladder_plan(shapes, fmt), report)
    row = table_row(fmt.name, fmt.bits_per_weight, metrics)
    row["quantized_bpw"] = round(metrics["quantized_bpw"], 3)
    row["stored_as"] = "; ".join(f"{g}: {'/'.join(names)}" for g, names in metrics["stored_as"].items()
                                 if names != [fmt.name])
    row["seconds"] = metrics["seconds"]
    return row


def baseline_rows(cache: QuantCache, model_key: str) -> list[dict]:
    """float32 itself and the noise floor (float32 recomputed on another thread count)."""
    shapes = workbench(cache, model_key).shapes
    size = {k: v for k, v in qt.summary({}, shapes).items() if k in ("size_bytes", "weights")}
    quality = run.chat_kld_report if model_key == CHAT else run.encoder_quality
    return [table_row("F32 (baseline)", 32, {**quality(cache, qs.FULL), **size}),
            table_row("F32, other thread count (noise floor)", 32, {**quality(cache, run.NOISE), **size})]


def ladder_rows(cache: QuantCache, model_key: str, names: list[str], progress: Progress | None = None) -> list[dict]:
    """Baseline, noise floor, then one row per chosen format in ladder order (finest first)."""
    check_model(model_key)
    chosen = {gf.format_named(n).name for n in names}
    formats = [f for f in gf.LADDER if f.name in chosen]
    report = progress or (lambda fraction, text: None)
    report(0.0, "float32 reference (once per process)")
    rows = baseline_rows(cache, model_key)
    for i, fmt in enumerate(formats):
        share = i / max(len(formats), 1)
        rows.append(format_row(cache, model_key, fmt,
                               lambda f, text, share=share: report(share + f / len(formats), text)))
    return rows


def baseline_is_packaged_gguf(cache: QuantCache, model_key: str) -> bool:
    """True when the float32 baseline was dequantized from the packaged GGUF (offline SmolLM2)."""
    return bool(compare.full_weights(cache.registry, model_key).gguf_file)


def baseline_note(cache: QuantCache, model_key: str) -> str:
    """Where the float32 baseline came from, in plain words (the registry's ModelSource)."""
    weights = compare.full_weights(cache.registry, model_key)
    source = cache.registry.resolve(model_key)
    if weights.gguf_file:
        return (f"Baseline: {weights.display_name} in float32, **dequantized from the packaged "
                f"{weights.gguf_file}** ({source.origin}: {source.location}). Its linear layers already "
                "hold Q4_1 values and its embedding Q8_0 values, so the Q4_1 row reproduces the baseline "
                "almost exactly and no finer format can come closer to it than Q4_1 does. On a Space the "
                "hub's original weights are the baseline instead.")
    return f"Baseline: {weights.display_name} in float32 from {source.origin}: {source.location}."

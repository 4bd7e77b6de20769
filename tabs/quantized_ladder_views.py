"""Tables, charts and notes for the GGUF ladder and the per-group sensitivity (Quantized tab).

Plain rows in (models.quant.ladder / sensitivity), pandas DataFrames, matplotlib Figures and
Markdown out. Text that came from outside (none does today: formats and groups are checked
names) would pass through `escape`.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from models.quant import gguf_formats as gf
from tabs.common import escape

FLOOR = 1e-5  # a KL of exactly 0 (a format that reproduces the baseline) is drawn here on the log scale
TABLE_COLUMNS = {  # API field -> column title for people
    "format": "format", "bits_per_weight": "bits/weight (format)", "file_bpw": "bits/weight (file)",
    "size_mb": "file MB", "perplexity": "perplexity", "mean_kl": "mean KL", "mean_kl_error": "±",
    "kl_p99": "KL p99", "kl_max": "KL max", "dp_mean_pct": "Δp mean %", "dp_rms_pct": "Δp RMS %",
    "dp_p99_pct": "Δp p99 %", "same_top1": "same top-1 %", "mean_cosine": "mean cosine",
    "overlap_at_k": "overlap@k %", "stored_as": "stored differently", "seconds": "first run (s)",
}


def _loss(row: dict) -> float | None:
    """What the y axis shows: mean KL (causal LM) or 1 - mean cosine (encoder)."""
    if "mean_kl" in row:
        return row["mean_kl"]
    return None if row.get("mean_cosine") is None else 1.0 - row["mean_cosine"]


def table(rows: list[dict], columns: dict[str, str] = TABLE_COLUMNS) -> pd.DataFrame:
    """Rows as a table with people's column titles, in a fixed column order."""
    keys = [k for k in columns if any(k in r for r in rows)] + [k for k in (rows[0] if rows else {})
                                                               if k not in columns]
    frame = pd.DataFrame([[r.get(k) for k in keys] for r in rows], columns=[columns.get(k, k) for k in keys])
    return frame.astype(object).where(frame.notna(), "")


def ladder_figure(rows: list[dict], encoder: bool) -> Figure:
    """Bits per weight of the file against the loss, log scale: the cliff below 4 bits."""
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    points = [r for r in rows if r["format"] in gf.FORMATS and _loss(r) is not None]
    xs = [r["file_bpw"] for r in points]
    ys = [max(_loss(r), FLOOR) for r in points]
    ax.plot(xs, ys, "o-", color="#1d4ed8")
    for r, x, y in zip(points, xs, ys, strict=True):
        mark = "*" if r.get("stored_as") else ""
        ax.annotate(f"{r['format']}{mark}", (x, y), textcoords="offset points", xytext=(4, 6), fontsize=8)
    noise = next((_loss(r) for r in rows if "noise" in r["format"]), None)
    if noise is not None:
        ax.axhline(max(noise, FLOOR), color="#6b7280", linestyle="--", linewidth=1)
        ax.annotate(f"noise floor ({noise:.2g})", (ax.get_xlim()[0], max(noise, FLOOR)), fontsize=8,
                    color="#6b7280", xytext=(2, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight of the whole file (tensor data / weights)")
    ax.set_ylabel("1 − mean cosine (log)" if encoder else "mean KL vs float32, nats (log)")
    ax.set_title("Fewer bits, more loss: 8 bits is nearly free, below 4 it falls off a cliff", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    return fig


def sensitivity_figure(rows: list[dict], fmt: str, encoder: bool) -> Figure:
    """The loss each group causes alone, one bar per group, log scale."""
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{r['label']}\n({r['weights_pct']}% of weights)" for r in rows]
    values = [max(_loss(r) or 0.0, FLOOR) for r in rows]
    bars = ax.bar(range(len(rows)), values, color="#dc2626")
    ax.bar_label(bars, labels=[f"{v:.2g}" for v in values], fontsize=7)
    ax.set_xticks(range(len(rows)), labels, fontsize=7, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("1 − mean cosine (log)" if encoder else "mean KL, nats (log)")
    ax.set_title(f"Each group alone in {fmt}, everything else float32", fontsize=10)
    return fig


def _inversions(rows: list[dict]) -> list[tuple[dict, dict]]:
    """Neighbouring ladder rows (finest first) where the coarser format lost less than the finer."""
    ladder = [r for r in rows if r["format"] in gf.FORMATS and r["format"] != "BF16" and _loss(r) is not None]
    return [(a, b) for a, b in zip(ladder, ladder[1:], strict=False) if _loss(b) < _loss(a)]


def _why(finer: dict, coarser: dict, dequantized_q4_1: bool) -> str:
    """Why a coarser format lost less than the next finer one."""
    a, b = finer["format"], coarser["format"]
    order = [f.name for f in gf.LADDER]
    if dequantized_q4_1 and "Q4_1" in (a, b):
        return ("the baseline *is* Q4_1 (dequantized from the packaged file), so Q4_1 gives back the very "
                "same values and every other format only adds its own rounding on top")
    if dequantized_q4_1 and order.index(b) < order.index("Q4_1"):
        return ("the baseline's weights already sit on Q4_1's 16-level grid, and a 5-bit grid rounds them "
                "again; how far its levels fall from the old ones depends on where each block lies "
                "(Q5_0's grid is centred on zero, Q5_1's starts at the block's minimum), not only on the "
                "bits. Weights that were never quantized (the hub's, on a Space) have no such double rounding")
    if abs(_loss(finer) - _loss(coarser)) <= (finer.get("mean_kl_error") or 0) + (coarser.get("mean_kl_error") or 0):
        return "the difference is within the measurement's standard error on this short text"
    if a.endswith("_0") and b.endswith("_1"):
        return ("a format with a minimum as well as a scale (Q*_1) fits blocks that are not centred on zero, "
                "which can outweigh the extra bit of a Q*_0 format")
    return ("the layouts differ in more than bits (a zero-centred or a min-based grid, an fp16 or a "
            "power-of-two scale), and on one short text that can outweigh a bit")


def ladder_notes(rows: list[dict], dequantized_q4_1: bool) -> str:
    """Whether the loss grows at every step (and why not where it does not); where a format could not
    apply and what was stored instead; the cliff."""
    inversions = _inversions(rows)
    if inversions:
        lines = ["**Reading the ladder.** The loss does not grow at every step here:"]
        lines += [f"- **{escape(b['format'])}** lost less than **{escape(a['format'])}**: "
                  f"{_why(a, b, dequantized_q4_1)}." for a, b in inversions]
    else:
        lines = ["**Reading the ladder.** The loss grows at every step down the ladder shown."]
    same = [r for r in rows if r["format"] in ("TQ2_0", "TQ1_0")]
    if len(same) == 2 and _loss(same[0]) == _loss(same[1]):
        lines.append("- TQ2_0 and TQ1_0 store the same ternary values (TQ1_0 packs 5 per byte, TQ2_0 4), "
                     "so their quality is identical by construction; only the size differs.")
    if any(r.get("stored_as") for r in rows if r["format"] in gf.FORMATS):
        lines.append("- `*` / *stored differently*: a row must be a whole number of blocks. 576-wide "
                     "(MiniLM: 384-wide) rows are not a multiple of 256, so the ternary formats cannot "
                     "hold them and, as llama-quantize does, those tensors are stored as Q4_0; only the "
                     "1536-wide MLP down-projections are ternary. The tied embedding / output is Q8_0 in "
                     "every row but BF16 (llama.cpp's choice for it, see the recipe above).")
    if any(r["format"] in ("TQ2_0", "TQ1_0") and (_loss(r) or 0) > 0.3 for r in rows):
        lines.append("- The cliff: ternary formats are meant for models *trained* with ternary weights "
                     "(BitNet b1.58); rounding a normally trained model's MLP down-projections to "
                     "{-1, 0, +1} x one scale per 256 weights destroys much of what it learned.")
    return "\n".join(lines)

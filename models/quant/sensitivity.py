"""Per-group sensitivity: which weights can take a coarse format, and which cannot.

Each group (the tied embeddings / lm_head; attention q, k, v, o; MLP gate, up, down) is stored in
the chosen GGUF format *alone*, everything else float32, and the KL it causes on the reference
text is measured (for the encoder: how far the embeddings move). Then any set of groups can be
kept in full precision while every other group, embeddings included, takes the format: the
"keep the sensitive layers in higher precision" trade-off that llama.cpp's own mixes (Q4_K_M
and friends) make, measured here. Rows come from models.quant.ladder.measure (cached: process
and disk).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.quant import gguf_formats as gf
from models.quant import tensors as qt
from models.quant.cache import QuantCache
from models.quant.ladder import check_model, measure, table_row, workbench

Progress = Callable[[float, str], None]


def _weights(shapes: dict, group: str) -> int:
    return sum(int(np.prod(s)) for n, s in shapes.items() if qt.group_of(n) == group)


def groups(cache: QuantCache, model_key: str) -> list[str]:
    """The model's groups, embeddings first."""
    return qt.groups_of(workbench(cache, check_model(model_key)).shapes)


def check_groups(cache: QuantCache, model_key: str, names: list[str] | None) -> set[str]:
    """The valid group keys among `names` (ValueError for an unknown one)."""
    known = groups(cache, model_key)
    chosen = set(names or [])
    if chosen - set(known):  # the message never echoes what was sent
        raise ValueError(f"Unknown group; this model's groups are {', '.join(known)}.")
    return chosen


def group_rows(cache: QuantCache, model_key: str, fmt_name: str, progress: Progress | None = None) -> list[dict]:
    """One row per group: that group alone in the format; KL (or cosine) against float32."""
    fmt = gf.format_named(fmt_name)
    report = progress or (lambda fraction, text: None)
    shapes = workbench(cache, check_model(model_key)).shapes
    total = sum(int(np.prod(s)) for s in shapes.values())
    names = qt.groups_of(shapes)
    rows = []
    for i, group in enumerate(names):
        metrics = measure(cache, model_key, f"group:{fmt.name}:{group}",
                          lambda s, group=group: qt.group_plan(s, fmt, group),
                          lambda f, text, i=i, group=group: report((i + f) / len(names),
                                                                   f"{qt.label(group, model_key)}: {text}"))
        row = {"group": group, "label": qt.label(group, model_key),
               "weights_pct": round(100 * _weights(shapes, group) / total, 1),
               **table_row(fmt.name, fmt.bits_per_weight, metrics)}
        row["stored_as"] = "/".join(metrics["stored_as"].get(group, []))
        rows.append(row)
    return rows


def keep_full_row(cache: QuantCache, model_key: str, fmt_name: str, kept: list[str] | None,
                  progress: Progress | None = None) -> dict:
    """Every group in the format except `kept` (float32): quality, size and bits of the mix."""
    fmt = gf.format_named(fmt_name)
    chosen = check_groups(cache, model_key, kept)
    label = ", ".join(sorted(chosen)) or "nothing"
    metrics = measure(cache, model_key, f"keep:{fmt.name}:{'+'.join(sorted(chosen))}",
                      lambda s: qt.all_but_plan(s, fmt, chosen), progress or (lambda fraction, text: None))
    row = {"kept_in_float32": label, **table_row(fmt.name, fmt.bits_per_weight, metrics)}
    row["quantized_bpw"] = round(metrics["quantized_bpw"], 3)
    return row

"""Pictures of attention that need no JavaScript: a heatmap PNG and a coloured head grid.

The heatmap uses matplotlib's object API (`Figure`, no pyplot), which is safe to call from
several server threads at once. The grid is plain HTML whose every text is escaped.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from models.attention.capture import AttentionData
from models.attention.head_stats import METRICS, TYPE_COLORS, TYPE_LABELS, HeadStats, head_types

MAX_LABELS = 96  # beyond this many tokens, only every k-th tick is labelled
SHORT = {"previous": "prev", "self": "self", "first": "sink", "sep": "SEP", "broad": "broad", "mixed": "mixed"}


def _plain(label: str) -> str:
    # "$" starts matplotlib mathtext; a token like "$x$" must stay literal text
    return label.replace("$", r"\$")


def head_matrix(data: AttentionData, layer: int, head: int | None) -> np.ndarray:
    """The (n, n) attention of one head, or the average over the layer's heads (head=None)."""
    if not 0 <= layer < data.n_layers:
        raise ValueError(f"Layer must be between 0 and {data.n_layers - 1}.")
    if head is None:
        return data.attentions[layer].mean(0)
    if not 0 <= head < data.n_heads:
        raise ValueError(f"Head must be between 0 and {data.n_heads - 1}.")
    return data.attentions[layer, head]


def heatmap_png(data: AttentionData, layer: int, head: int | None, path: str | Path) -> Path:
    """Draw one head (or the layer's average) with token labels and save it as a PNG."""
    from matplotlib.figure import Figure

    matrix = head_matrix(data, layer, head)
    n = matrix.shape[0]
    side = min(4.5 + 0.16 * n, 22.0)
    fig = Figure(figsize=(side + 1.6, side), dpi=100 if n <= 96 else 80, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-6),
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention weight")
    step = max(1, -(-n // MAX_LABELS))
    ticks = list(range(0, n, step))
    labels = [_plain(data.labels[i]) for i in ticks]
    size = 9 if n <= 32 else 7 if n <= 64 else 5
    ax.set_xticks(ticks, labels, rotation=90, fontsize=size)
    ax.set_yticks(ticks, labels, fontsize=size)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if data.generated_start is not None:  # generated tokens: red labels, a line where they start
        for tick_label, i in zip(ax.get_xticklabels() + ax.get_yticklabels(), ticks + ticks, strict=False):
            if i >= data.generated_start:
                tick_label.set_color("#c0392b")
        ax.axhline(data.generated_start - 0.5, color="#c0392b", lw=1)
    if data.sentence_b_start is not None:  # sentence pair: segment A / B boundary
        for draw in (ax.axhline, ax.axvline):
            draw(data.sentence_b_start - 0.5, color="white", lw=1, ls="--")
    which = "average of all heads" if head is None else f"head {head}"
    ax.set_title(f"{data.model_name}: layer {layer}, {which}", fontsize=11)
    fig.savefig(path, format="png")
    return Path(path)


def head_grid_html(stats: HeadStats) -> str:
    """A layers x heads table, each cell coloured by the head's dominant pattern."""
    types = head_types(stats)
    layers, heads = stats.shape
    head_cells = "".join(f"<th>H{h}</th>" for h in range(heads))
    rows = []
    for layer in range(layers):
        cells = []
        for head in range(heads):
            kind = types[layer][head]
            values = {m: float(stats.scores[m][layer, head]) for m in METRICS}
            detail = ", ".join(f"{m} {'n/a' if np.isnan(v) else f'{v:.2f}'}" for m, v in values.items())
            score = values["entropy"] if kind in ("broad", "mixed") else values[kind]
            text = f"{SHORT[kind]} {score:.2f}"
            cells.append(
                f'<td style="background:{TYPE_COLORS[kind]}" '
                f'title="{html.escape(f"layer {layer} head {head}: {TYPE_LABELS[kind]}; {detail}")}">'
                f"{html.escape(text)}</td>")
        rows.append(f"<tr><th>L{layer}</th>{''.join(cells)}</tr>")
    legend = " ".join(
        f'<span style="background:{color};padding:1px 6px;border-radius:3px;margin-right:4px">'
        f"{html.escape(TYPE_LABELS[kind])}</span>" for kind, color in TYPE_COLORS.items())
    return ('<div class="attention-head-grid" style="overflow-x:auto">'
            f'<p style="font-size:13px;margin:4px 0">{legend}</p>'
            '<table style="border-collapse:collapse;font-size:11px;font-family:monospace">'
            f"<tr><th></th>{head_cells}</tr>{''.join(rows)}</table>"
            '<p style="font-size:12px;color:#555">Cell: dominant pattern and its score (share of '
            "attention; entropy in bits for broad/mixed heads). Hover a cell for all its numbers.</p></div>")

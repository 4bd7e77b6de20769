"""What the Attention tab shows, built from the plain records of models/attention/.

The bertviz views as a sandboxed iframe (the page itself: tabs/bertviz_views.py), a heatmap
PNG, the coloured grid of head types, and the Markdown and tables that explain a run, a
Q·K walk-through and a head knock-out. No components, listeners or model runs here. Every
text that reaches HTML goes through `tabs.common.escape`; the heatmap uses matplotlib's
object API (`Figure`, no pyplot), which is safe to call from several server threads at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.attention.capture import AttentionData
from models.attention.head_stats import METRICS, TYPE_LABELS, HeadStats, head_types
from models.attention.knockout import KnockoutResult
from models.attention.walkthrough import WalkThrough
from tabs.bertviz_views import sandboxed_iframe, views_document
from tabs.common import escape

MAX_LABELS = 96  # beyond this many tokens, only every k-th heatmap tick is labelled
GENERATED_COLOR = "#c0392b"  # generated tokens in the heatmap
TYPE_COLORS = {  # head pattern -> background colour of its cells in the grid (and the legend's order)
    "previous": "#f4a261", "self": "#8ecae6", "first": "#b5a4e8", "sep": "#e9c46a",
    "broad": "#c7e9c0", "mixed": "#eeeeee",
}
SHORT = {"previous": "prev", "self": "self", "first": "sink", "sep": "SEP", "broad": "broad", "mixed": "mixed"}
HEAD_COLUMNS = ["layer", "head", "type", *METRICS]
WALK_COLUMNS = ["#", "key", "q·k", "scaled", "mask", "scaled+mask", "exp(s−max)", "softmax", "model weight"]


# ---- bertviz views --------------------------------------------------------------------------

def views_html(data: AttentionData, layers: list[int]) -> str:
    """The bertviz head + model views of `layers` as a sandboxed iframe sized to its content."""
    att, tokens, b_start, notice = data.for_views()
    if len(layers) < data.n_layers:
        shown = f"Layers shown in the bertviz views: {', '.join(map(str, layers))} of 0-{data.n_layers - 1}."
        notice = f"{notice} {shown}".strip()
    document = views_document(att, tokens, b_start, layers=layers, notice=notice)
    n = len(tokens)
    height = min(1400, 260 + 23 * n + len(layers) * (n * 84 // data.n_heads + 10))
    return sandboxed_iframe(document, height=height)


def status_markdown(data: AttentionData) -> str:
    """What was run: model, sizes, the sentence-pair boundary, generated tokens, notices."""
    parts = [f"**{data.model_name}** ({data.kind}): {data.n_tokens} tokens, {data.n_layers} layers × "
             f"{data.n_heads} heads."]
    if data.sentence_b_start is not None:
        parts.append(f"Sentence B starts at token {data.sentence_b_start} (segment id 1).")
    if data.generated_start is not None:
        parts.append(f"Tokens {data.generated_start}-{data.n_tokens - 1} were generated (greedy); "
                     "in the heatmap they are red, below the red line.")
    parts += [f"ℹ️ {notice}" for notice in data.notices]
    return "\n\n".join(parts)


def query_choices(data: AttentionData) -> list[tuple[str, int]]:
    """(label, index) of every token, for the walk-through's query picker."""
    return [(f"{i}: {label}", i) for i, label in enumerate(data.labels)]


# ---- heatmap ---------------------------------------------------------------------------------

def _plain(label: str) -> str:
    # "$" starts matplotlib mathtext; a token like "$x$" must stay literal text
    return label.replace("$", r"\$")


def heatmap_png(data: AttentionData, layer: int, head: int | None, path: str | Path) -> Path:
    """Draw one head (or the layer's average) with token labels and save it as a PNG."""
    from matplotlib.figure import Figure

    matrix = data.head_matrix(layer, head)
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
                tick_label.set_color(GENERATED_COLOR)
        ax.axhline(data.generated_start - 0.5, color=GENERATED_COLOR, lw=1)
    if data.sentence_b_start is not None:  # sentence pair: segment A / B boundary
        for draw in (ax.axhline, ax.axvline):
            draw(data.sentence_b_start - 0.5, color="white", lw=1, ls="--")
    which = "average of all heads" if head is None else f"head {head}"
    ax.set_title(f"{data.model_name}: layer {layer}, {which}", fontsize=11)
    fig.savefig(path, format="png")
    return Path(path)


# ---- what each head does ---------------------------------------------------------------------

def head_table(stats: HeadStats) -> pd.DataFrame:
    """One row per head: its type and every score."""
    return pd.DataFrame(stats.rows(), columns=HEAD_COLUMNS)


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
                f'title="{escape(f"layer {layer} head {head}: {TYPE_LABELS[kind]}; {detail}")}">'
                f"{escape(text)}</td>")
        rows.append(f"<tr><th>L{layer}</th>{''.join(cells)}</tr>")
    legend = " ".join(
        f'<span style="background:{color};padding:1px 6px;border-radius:3px;margin-right:4px">'
        f"{escape(TYPE_LABELS[kind])}</span>" for kind, color in TYPE_COLORS.items())
    return ('<div class="attention-head-grid" style="overflow-x:auto">'
            f'<p style="font-size:13px;margin:4px 0">{legend}</p>'
            '<table style="border-collapse:collapse;font-size:11px;font-family:monospace">'
            f"<tr><th></th>{head_cells}</tr>{''.join(rows)}</table>"
            '<p style="font-size:12px;color:#555">Cell: dominant pattern and its score (share of '
            "attention; entropy in bits for broad/mixed heads). Hover a cell for all its numbers.</p></div>")


# ---- walk-through and knock-out --------------------------------------------------------------

def walkthrough_view(walk: WalkThrough, kind: str) -> tuple[str, pd.DataFrame]:
    """(explanation markdown, one row per key) for the Q·K walk-through of one head and query."""
    causal = "; the causal mask sets every later key to −∞" if kind == "decoder" else ""
    rope = " Q and K were first rotated by their positions (RoPE)." if walk.rotary else ""
    text = (f"Layer {walk.layer}, head {walk.head}, query token {walk.query_index} "
            f"(`{walk.query_label.strip() or repr(walk.query_label)}`).\n\n"
            f"1. **score** = q·k for every key (q, k: {walk.head_dim}-dim vectors).{rope}\n"
            f"2. **scaled** = score × 1/√{walk.head_dim} = score × {walk.scale:.4f}\n"
            f"3. **+ mask**: 0 where the query may look{causal}.\n"
            f"4. **softmax**: exp(s − max) / Σ exp(s − max).\n\n"
            f"Largest difference from the weights the model returned: **{walk.max_abs_diff:.2e}**.")
    return text, pd.DataFrame(walk.rows(), columns=WALK_COLUMNS)


def knockout_view(result: KnockoutResult) -> tuple[str, pd.DataFrame]:
    """(result markdown, comparison rows) after switching heads off."""
    names = ", ".join(f"{layer}.{head}" for layer, head in result.heads)
    if result.kind == "decoder":
        changed = result.top_before[0][0] != result.top_after[0][0]
        text = (f"Switched off **{len(result.heads)} head(s)** ({names}). Next-token distribution after "
                f"the last token: **KL(before ‖ after) = {result.kl:.4f} nats**. The most likely next token "
                f"{'**changed**' if changed else 'stayed the same'}.")
        rows = [[i + 1, repr(b[0]), b[1], repr(a[0]), a[1]]
                for i, (b, a) in enumerate(zip(result.top_before, result.top_after, strict=True))]
        return text, pd.DataFrame(rows, columns=["rank", "before", "p before", "after", "p after"])
    text = (f"Switched off **{len(result.heads)} head(s)** ({names}). Sentence embedding (mean pooling, "
            f"normalised): **cosine to the original = {result.cosine:.4f}** (1 = unchanged).")
    rows = [[i + 1, token, cosine] for i, (token, cosine) in enumerate(result.moved_tokens)]
    return text, pd.DataFrame(rows, columns=["rank", "most changed token", "cosine to original"])

"""HTML, tables and charts for the Quantized tab: two token columns with the first divergence
marked, the KL strip, and bar charts drawn from the row data the models return.

All text passes through `escape`; colours come from numbers we computed, never from input.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from models.quant.report import CostTable, bytes_long
from tabs.common import escape

KL_FULL_COLOUR = 2.0  # nats: a fixed scale, so strips from different runs compare by eye


def _visible(token: str) -> str:
    return escape(token).replace("\n", "⏎<br>")


def column(tokens: list[str], diverge_at: int | None, title: str, done: bool) -> str:
    """One model's output; the first differing token is boxed, the rest after it faded."""
    spans = []
    for i, tok in enumerate(tokens):
        if diverge_at is not None and i == diverge_at:
            spans.append(f'<span class="qv-diverge" title="first token that differs">{_visible(tok)}</span>')
        elif diverge_at is not None and i > diverge_at:
            spans.append(f'<span class="qv-after">{_visible(tok)}</span>')
        else:
            spans.append(_visible(tok))
    cursor = "" if done else '<span class="qv-cursor">▌</span>'
    return (f'<div class="qv-col"><div class="qv-title">{escape(title)}</div>'
            f'<div class="qv-text">{"".join(spans)}{cursor}</div></div>')


def ranking(hits: list[tuple[str, float]], diverge_at: int | None, title: str) -> str:
    """An encoder's top-k retrieval for the prompt, first differing rank boxed."""
    items = []
    for i, (sentence, score) in enumerate(hits):
        cls = ' class="qv-diverge"' if diverge_at is not None and i == diverge_at else ""
        items.append(f"<li{cls}>{escape(sentence)} <small>({score:.4f})</small></li>")
    return (f'<div class="qv-col"><div class="qv-title">{escape(title)}</div>'
            f'<ol class="qv-text">{"".join(items)}</ol></div>')


def kl_strip(rows: list[dict], quant_label: str) -> str:
    """The full model's tokens, background by KL(full || quant), top-1 flips underlined."""
    if not rows:
        return ""
    spans = []
    for r in rows:
        alpha = min(r["kl"] / KL_FULL_COLOUR, 1.0) * 0.85
        flip = " qv-flip" if r["flip"] else ""
        tip = f"KL {r['kl']:.4f} nats"
        if r["flip"]:
            tip += f"; {quant_label} would pick {r['quant_token']!r}"
        spans.append(f'<span class="qv-tok{flip}" style="background: rgba(220, 38, 38, {alpha:.3f})" '
                     f'title="{escape(tip)}">{_visible(r["token"])}</span>')
    flips = sum(r["flip"] for r in rows)
    mean_kl = sum(r["kl"] for r in rows) / len(rows)
    legend = (f"<p class='qv-legend'>Each token of the fp32 output, coloured by the KL divergence between "
              f"fp32 and {escape(quant_label)} at the step that chose it (white = 0, deep red ≥ "
              f"{KL_FULL_COLOUR:g} nats). <span class='qv-tok qv-flip'>Underlined</span>: the quantized "
              f"model's top-1 differs there ({flips} of {len(rows)}; mean KL {mean_kl:.4f}). "
              "Hover a token for its numbers.</p>")
    return f'<div class="qv-strip">{"".join(spans)}</div>{legend}'


def sentence_strip(sentences: list[str], cosines: list[float], quant_label: str) -> str:
    """Encoder version of the strip: each corpus sentence coloured by 1 - cosine(fp32, quant)."""
    spans = []
    for s, c in zip(sentences, cosines, strict=True):
        alpha = min((1.0 - c) / 0.1, 1.0) * 0.85  # 0.9 cosine = deep red
        spans.append(f'<span class="qv-tok" style="background: rgba(220, 38, 38, {alpha:.3f})" '
                     f'title="cosine {c:.5f}">{escape(s)}</span> ')
    legend = (f"<p class='qv-legend'>Each bundled sentence coloured by how far its {escape(quant_label)} "
              "embedding moved from fp32 (white = cosine 1, deep red ≤ 0.9).</p>")
    return f'<div class="qv-strip">{"".join(spans)}</div>{legend}'


# ---- tables and charts, from plain rows ---------------------------------------------------------


def table(rows: list[dict]) -> pd.DataFrame:
    """Rows (column -> value) as a table; a missing value shows as a blank cell."""
    frame = pd.DataFrame(rows)
    return frame.astype(object).where(frame.notna(), "")


def _bars(rows: list[dict], column: str, order: list[str]) -> gr.BarPlot:
    data = pd.DataFrame([(r["scheme"], r[column]) for r in rows if isinstance(r.get(column), (int, float))],
                        columns=["scheme", "value"])  # a missing value is left out, not drawn as 0
    return gr.BarPlot(data, sort=order)  # the table's order, not alphabetical


def cost_charts(cost: CostTable | None):
    """Size, speed and first-token latency bars of every scheme, from the cost rows."""
    if cost is None or not cost.rows:
        return None, None, None
    order = [r["scheme"] for r in cost.rows]
    return tuple(_bars(cost.rows, column, order) for column in ("size (MB)", "tokens/s", cost.latency))


def bytes_chart(rows: list[dict]) -> gr.BarPlot:
    """MB per part of the model, stacked, one bar per scheme in the table's order."""
    return gr.BarPlot(pd.DataFrame(bytes_long(rows)), sort=[r["scheme"] for r in rows])


CSS = """
<style>
.qv-col { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 12px; min-height: 6em; }
.qv-title { font-weight: 600; margin-bottom: 4px; }
.qv-text { white-space: pre-wrap; line-height: 1.6; }
.qv-diverge { outline: 2px solid #dc2626; border-radius: 3px; background: rgba(250, 204, 21, 0.5); }
.qv-after { opacity: 0.55; }
.qv-cursor { opacity: 0.6; }
.qv-strip { line-height: 2; white-space: pre-wrap; }
.qv-tok { border-radius: 3px; padding: 1px 0; }
.qv-flip { text-decoration: underline 3px #1d4ed8; text-underline-offset: 3px; }
.qv-legend { font-size: 0.9em; opacity: 0.85; }
</style>
"""

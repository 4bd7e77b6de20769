"""HTML, tables and charts of the "From text to numbers" tab, built from the plain records of models/tokens.

No model here: every string from the user or the vocabulary reaching HTML goes through
`escape`; charts are matplotlib Figures (object API, no pyplot state shared between requests);
tables are pandas DataFrames for gr.Dataframe.
"""

from __future__ import annotations

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from models.tokens.logit_lens import LogitLens
from models.tokens.merges import LookupPath, MergePath
from models.tokens.positions import RotaryCurve
from models.tokens.sentence_map import SentenceMap
from models.tokens.token_vectors import Analogy, Neighbours
from models.tokens.tokenization import SPECIAL, TEMPLATE, UNKNOWN, Tokenization
from tabs.common import escape

PIECE_COLOURS = ["#c8e6c9", "#bbdefb", "#ffe0b2", "#e1bee7", "#fff59d", "#b2ebf2"]
KIND_STYLE = {SPECIAL: "background:#37474f;color:#fff", TEMPLATE: "background:#eceff1;color:#78909c",
              UNKNOWN: "background:#ef9a9a;color:#b71c1c;font-weight:bold"}
CHIP = ("display:inline-block;margin:2px 1px;padding:1px 4px;border-radius:4px;font-family:ui-monospace,"
        "monospace;font-size:0.9em;white-space:pre;line-height:1.5;color:#212121;")
MARKERS_NOTE = ("<b>Ġ</b> = a space before the piece, <b>Ċ</b> = a newline (byte-level BPE writes every byte as a "
                "printable character); <b>##</b> = the piece continues a word (WordPiece). Hover a piece for its id "
                "and the text it covers; dark = special token, grey = chat template, red = unknown.")


def visible(text: str) -> str:
    """A token's text with its whitespace made visible (␣ space, ↵ newline, ⇥ tab)."""
    return str(text).replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def _code(text: str) -> str:
    """A token inside Markdown: an HTML code span (entities are decoded there; in backticks they are not)."""
    return f"<code>{escape(visible(text))}</code>"


def _plot_label(text: str, width: int = 28) -> str:
    """Text for matplotlib: shortened, and `$` escaped (it would start math mode)."""
    text = " ".join(str(text).split())
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("$", r"\$")


# ---- tokenizers ---------------------------------------------------------------------------
def _chip(piece, index: int) -> str:
    style = KIND_STYLE.get(piece.kind, f"background:{PIECE_COLOURS[index % len(PIECE_COLOURS)]}")
    covers = f"bytes {piece.byte_hex} (part of a character)" if piece.byte_hex else repr(piece.text)
    title = f"id {piece.token_id} · {piece.kind} · {covers}"
    return f'<span class="tok-piece tok-{piece.kind}" style="{CHIP}{style}" title="{escape(title)}">' \
           f'{escape(piece.token)}<sub style="opacity:.6;font-size:.7em;color:inherit"> {piece.token_id}</sub></span>'


def pieces_html(result: Tokenization) -> str:
    """One tokenizer's pieces as coloured chips, with its counts in a heading."""
    chips = "".join(_chip(p, i) for i, p in enumerate(result.pieces))
    head = (f"<b>{escape(result.name)}</b> · {escape(result.algorithm)} · vocabulary {result.vocab_size:,} · "
            f"<b>{result.text_tokens}</b> tokens for {result.n_chars:,} characters "
            f"({result.chars_per_token:.2f} characters per token), {len(result.pieces)} in all")
    normalized = ""
    if result.normalized != "" and result.algorithm == "WordPiece":
        shown = escape(result.normalized[:300])
        normalized = f'<div style="opacity:.75">after its normalizer: <code>{shown}</code></div>'
    notes = "".join(f'<div style="opacity:.75">ℹ️ {escape(n)}</div>' for n in result.notes)
    return (f'<div class="tok-view" data-tokenizer="{escape(result.name)}"><div>{head}</div>{normalized}{notes}'
            f'<div style="margin-top:4px">{chips}</div></div>')


def legend_html() -> str:
    return f'<div style="font-size:.9em;opacity:.8">{MARKERS_NOTE}</div>'


def counts_table(results: list[Tokenization]) -> pd.DataFrame:
    rows = [[r.name, r.algorithm, f"{r.vocab_size:,}", r.text_tokens, round(r.chars_per_token, 2),
             r.count(SPECIAL), r.count(TEMPLATE), r.count(UNKNOWN), len(r.pieces)] for r in results]
    return pd.DataFrame(rows, columns=["model", "tokenizer", "vocabulary", "tokens for your text", "chars / token",
                                       "special", "chat template", "unknown", "total"])


def word_choices(text: str, limit: int = 60) -> list[str]:
    """The distinct words of a text, for the 'explain a word' picker."""
    words = [w.strip(".,;:!?()[]{}\"'") for w in (text or "").split()]
    return list(dict.fromkeys(w for w in words if w and len(w) <= 48))[:limit]


def merge_path_html(paths: list[MergePath]) -> str:
    blocks = []
    for path in paths:
        start = " ".join(f"<code>{escape(s)}</code>" for s in path.start)
        count = f"{len(path.start)} byte{'s' if len(path.start) != 1 else ''}"
        lines = [f"<div><b>{escape(path.word)}</b>: {count} to start with: {start}</div>"]
        if path.whole_word_in_vocab:
            lines.append("<div>The whole word is in the vocabulary: taken as it is.</div>")
        lines += [f'<div>{i}. merge rank <b>{s.rank:,}</b>: <code>{escape(s.left)}</code> + <code>{escape(s.right)}'
                  f'</code> → {" ".join(f"<code>{escape(p)}</code>" for p in s.pieces)}</div>'
                  for i, s in enumerate(path.steps, start=1)]
        verdict = "one token" if len(path.pieces) == 1 else f"{len(path.pieces)} tokens: no listed merge joins them"
        lines.append(f"<div>→ <b>{verdict}</b></div>")
        blocks.append(f'<div style="margin-bottom:8px">{"".join(lines)}</div>')
    return "<div class='tok-merges'>" + "".join(blocks) + "</div>"


def lookups_html(paths: list[LookupPath], shown_misses: int = 4) -> str:
    blocks = []
    for path in paths:
        lines = [f"<div><b>{escape(path.word)}</b></div>"]
        if path.too_long:
            lines.append("<div>Longer than the 100 characters WordPiece looks up: <code>[UNK]</code>.</div>")
        by_start: dict[int, list] = {}
        for lookup in path.lookups:
            by_start.setdefault(lookup.start, []).append(lookup)
        for start, lookups in by_start.items():
            misses = [lk.candidate for lk in lookups if not lk.found]
            found = [lk.candidate for lk in lookups if lk.found]
            shown = ", ".join(f"<s>{escape(m)}</s>" for m in misses[:shown_misses])
            more = f" … {len(misses) - shown_misses} more" if len(misses) > shown_misses else ""
            result = f"found <code>{escape(found[0])}</code>" if found else "nothing found: the word is [UNK]"
            tried = f"not in vocabulary: {shown}{more}; " if misses else ""
            lines.append(f"<div>from character {start}: {tried}{result}</div>")
        pieces = " ".join(escape(p) for p in path.pieces)
        n = len(path.lookups)
        lines.append(f"<div>→ <b>{pieces}</b> after {n} lookup{'s' if n != 1 else ''}</div>")
        blocks.append(f'<div style="margin-bottom:8px">{"".join(lines)}</div>')
    head = "<div style='opacity:.75'>Words after lower-casing, accent stripping and splitting at punctuation:</div>"
    return "<div class='tok-lookups'>" + head + "".join(blocks) + "</div>"


# ---- embeddings ---------------------------------------------------------------------------
def _group_colours(groups: list[str]) -> dict[str, tuple]:
    palette = colormaps["tab10"]
    return {g: palette(i % 10) for i, g in enumerate(dict.fromkeys(groups))}


def map_figure(smap: SentenceMap) -> Figure:
    dims = smap.coordinates.shape[1]
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot(projection="3d" if dims == 3 else None)
    colours = _group_colours(smap.groups)
    for group, colour in colours.items():
        idx = [i for i, g in enumerate(smap.groups) if g == group]
        points = smap.coordinates[idx]
        ax.scatter(*[points[:, d] for d in range(dims)], color=colour, s=40, label=_plot_label(group, 24))
    for i, text in enumerate(smap.texts):
        ax.text(*smap.coordinates[i], " " + _plot_label(text, 26), fontsize=7)
    for d, axis in enumerate(["x", "y", "z"][:dims]):
        getattr(ax, f"set_{axis}label")(f"PCA {d + 1} ({smap.explained[d]:.0%})")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Sentence embeddings (MiniLM), projected with PCA", fontsize=10)
    return fig


def similarity_figure(matrix, labels: list[str], title: str, annotate_below: int = 16) -> Figure:
    n = len(labels)
    fig = Figure(figsize=(7.5, 6.2), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=min(0.0, float(matrix.min())), vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    if labels and n <= 60:
        ax.set_xticks(range(n), [_plot_label(t, 18) for t in labels], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n), [_plot_label(t, 24) for t in labels], fontsize=7)
    if n < annotate_below:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if matrix[i, j] < 0.6 else "black")
    ax.set_title(title, fontsize=10)
    return fig


def neighbours_table(result: Neighbours) -> pd.DataFrame:
    rows = [[i, visible(n.text), n.token_id, round(n.cosine, 4)] for i, n in enumerate(result.neighbours, start=1)]
    return pd.DataFrame(rows, columns=["rank", "token", "id", "cosine"])


def analogy_table(result: Analogy) -> pd.DataFrame:
    rows = [[i, visible(n.text), n.token_id, round(n.cosine, 4)] for i, n in enumerate(result.top, start=1)]
    return pd.DataFrame(rows, columns=["rank (inputs left out)", "token", "id", "cosine to a − b + c"])


def analogy_note(result: Analogy) -> str:
    a, b, c = (_code(t.text) for t in result.tokens)
    lines = [f"**{a} − {b} + {c}** → nearest token (the three inputs left out): "
             f"{_code(result.top[0].text)} (cosine {result.top[0].cosine:.3f})."]
    overall = result.nearest_overall
    if overall.token_id in {t.token_id for t in result.tokens}:
        lines.append(f"With the inputs included, the nearest is {_code(overall.text)} itself "
                     f"(cosine {overall.cosine:.3f}): the sum stays closest to an input, which is why the recipe "
                     "leaves them out.")
    if result.expected is not None:
        e = _code(result.expected.text)
        if result.expected_rank is None:
            lines.append(f"The expected answer {e} is one of the inputs.")
        else:
            lines.append(f"The expected answer {e} ranks **{result.expected_rank:,}** of the vocabulary with the "
                         f"inputs left out ({result.expected_rank_with_inputs:,} with them), cosine "
                         f"{result.expected.cosine:.3f}.")
    return "\n\n".join(lines)


ANALOGY_COLUMNS = ["a − b + c", "expected", "nearest (inputs out)", "rank of expected (inputs out)",
                   "rank of expected (inputs in)", "nearest overall"]


def analogy_row(result: Analogy) -> list:
    a, b, c = (visible(t.text).strip("␣") for t in result.tokens)
    expected = visible(result.expected.text) if result.expected else ""
    return [f"{a} − {b} + {c}", expected, visible(result.top[0].text), result.expected_rank,
            result.expected_rank_with_inputs, visible(result.nearest_overall.text)]


# ---- positions ----------------------------------------------------------------------------
def rotary_figure(curve: RotaryCurve) -> Figure:
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    for head, scores in enumerate(curve.scores):
        ax.plot(curve.distances, scores, linewidth=0.8, alpha=0.45, label=f"head {head + 1}" if head < 3 else None)
    mean = curve.scores.mean(axis=0)
    ax.plot(curve.distances, mean, color="black", linewidth=2.2, label="mean of the heads")
    ax.axhline(mean[0], color="black", linestyle="--", linewidth=1,
               label="mean without position (distance 0: the rotations cancel)")
    ax.set_xlabel("distance: how many tokens the key is before the query")
    ax.set_ylabel("attention score q·k / √d")
    ax.set_title(f"Layer {curve.layer}: query {_plot_label(visible(curve.query))} · key "
                 f"{_plot_label(visible(curve.key))}, the same two vectors at every distance", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def positions_figure(matrix) -> Figure:
    n = matrix.shape[0]
    fig = similarity_figure(matrix, [], f"MiniLM's learned position vectors 0-{n - 1}: cosine similarity",
                            annotate_below=0)
    ax = fig.axes[0]
    ax.set_xlabel("position")
    ax.set_ylabel("position")
    return fig


# ---- logit lens ---------------------------------------------------------------------------
def lens_grid(lens: LogitLens):
    """The grid as a pandas Styler: one row per layer (the model's output on top), one column per
    position; each cell is that layer's top-1 next token, shaded by its probability, bold where it
    is already the model's final choice."""
    order = list(range(len(lens.layers) - 1, -1, -1))
    columns = ["read after"] + [f"{i}: {visible(t)[:14]}" for i, t in enumerate(lens.tokens)]
    rows = [[lens.layers[layer]] + [visible(lens.text(lens.top_ids[layer, pos, 0]))[:14]
                                    for pos in range(len(lens.tokens))] for layer in order]
    frame = pd.DataFrame(rows, columns=columns)
    blues = colormaps["Blues"]

    def shade(prob: float, final: bool) -> str:
        r, g, b, _ = blues(0.08 + 0.8 * prob)
        text = "#fff" if prob > 0.55 else "#111"
        weight = "font-weight:bold;text-decoration:underline;" if final else ""
        return f"background-color:#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x};color:{text};{weight}"

    styles = pd.DataFrame([[""] + [shade(float(lens.top_probs[layer, pos, 0]),
                                         lens.top_ids[layer, pos, 0] == lens.chosen_ids[pos])
                                   for pos in range(len(lens.tokens))] for layer in order], columns=columns)
    return frame.style.apply(lambda _: styles, axis=None)


def lens_row_layer(lens: LogitLens, row: int) -> int:
    """The layer index of a grid row (the grid lists the layers from the last to the first)."""
    return len(lens.layers) - 1 - row


def cell_table(lens: LogitLens, layer: int, position: int) -> pd.DataFrame:
    rows = [[i, visible(text), token_id, f"{prob:.2%}"] for i, (text, token_id, prob) in
            enumerate(lens.top_tokens(layer, position), start=1)]
    return pd.DataFrame(rows, columns=["rank", "next token", "id", "probability"])


def cell_summary(lens: LogitLens, layer: int, position: int) -> str:
    chosen = _code(lens.text(lens.chosen_ids[position]))
    rank, prob = int(lens.chosen_ranks[layer, position]), float(lens.chosen_probs[layer, position])
    return (f"**{escape(lens.layers[layer])}**, after position {position} ({_code(lens.tokens[position])}): "
            f"the model's final choice there is {chosen}, which this layer ranks **{rank:,}** with p = {prob:.2%}.")


def chosen_figure(lens: LogitLens, position: int) -> Figure:
    """Probability and rank of the model's final choice at one position, after each layer."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = list(range(len(lens.layers)))
    ax.plot(x, lens.chosen_probs[:, position], color="#1e88e5", marker="o", markersize=3, label="probability")
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability", color="#1e88e5")
    ax.set_xlabel("read after layer (0 = the embeddings)")
    rank_ax = ax.twinx()
    rank_ax.plot(x, lens.chosen_ranks[:, position], color="#e53935", marker="s", markersize=3, label="rank")
    rank_ax.set_yscale("log")
    rank_ax.invert_yaxis()
    rank_ax.set_ylabel("rank (1 = top, log scale)", color="#e53935")
    chosen = _plot_label(visible(lens.text(lens.chosen_ids[position])), 20)
    ax.set_title(f"{chosen} after position {position} ({_plot_label(visible(lens.tokens[position]), 16)})",
                 fontsize=10, loc="right")
    return fig


def position_choices(lens: LogitLens) -> list[tuple[str, int]]:
    return [(f"{i}: {visible(t)}", i) for i, t in enumerate(lens.tokens)]


def layer_choices(lens: LogitLens) -> list[tuple[str, int]]:
    return [(name, i) for i, name in enumerate(lens.layers)]

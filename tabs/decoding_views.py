"""Markdown, tables and charts of the decoding playground, built from the plain records of
models/decoding/steps.py.

No components and no model here: markdown strings (user text escaped with tabs.common.escape),
the colours of the probability bands, pandas DataFrames for gr.Dataframe, matplotlib Figures
(object API, no pyplot state shared between requests) for gr.Plot.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from models.decoding.steps import Step, probability_band
from tabs.common import escape

# One colour per band of models.decoding.steps.probability_band, for gr.HighlightedText's color_map.
BAND_COLORS = {"p ≥ 0.9": "#2e7d32", "0.5 – 0.9": "#8bc34a", "0.2 – 0.5": "#ffeb3b",
               "0.05 – 0.2": "#ff9800", "p < 0.05": "#e53935"}


def show_token(text: str) -> str:
    """A token made readable in tables: visible spaces and newlines."""
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def notes_markdown(notes: list[str]) -> str:
    """The notes normalize() made about the settings, one paragraph each (a note may quote user input)."""
    return "\n\n".join(f"ℹ️ {escape(n)}" for n in notes)


def _plot_label(token: str) -> str:
    """A token as matplotlib text: `$` would otherwise start math mode."""
    return show_token(token).replace("$", r"\$")


STAGE_COLUMNS = ["stage", "tokens left", "mass kept", "entropy (bits)", "p(chosen)", "rank of chosen"]


def highlighted(pieces: list[str], probs: list[float]) -> list[tuple[str, str]]:
    """gr.HighlightedText value: each token with its probability band."""
    return [(piece, probability_band(p)) for piece, p in zip(pieces, probs, strict=False)]


def step_choices(steps: list[Step]) -> list[tuple[str, int]]:
    return [(f"{s.index + 1}: {show_token(s.token)!s}  (p={s.prob:.2f})", s.index) for s in steps]


def stage_table(step: Step) -> pd.DataFrame:
    rows = [[st.name, st.surviving, f"{st.mass_kept:.1%}", round(st.entropy_bits, 2), f"{st.chosen_prob:.2%}",
             st.chosen_rank] for st in step.stages]
    return pd.DataFrame(rows, columns=STAGE_COLUMNS)


def candidate_table(step: Step) -> pd.DataFrame:
    names = [st.name for st in step.stages]
    rows = [["▶" if c.chosen else "", show_token(c.token), c.token_id] + [f"{p:.2%}" for p in c.probs]
            for c in step.candidates]
    return pd.DataFrame(rows, columns=["chosen", "token", "id"] + names)


def contrastive_table(step: Step) -> pd.DataFrame:
    rows = [["▶" if c["chosen"] else "", show_token(c["token"]), round(c["probability"], 4),
             round(c["degeneration penalty"], 4), round(c["score"], 4)] for c in step.contrastive or []]
    return pd.DataFrame(rows, columns=["chosen", "token", "p(v)", "max cos sim (penalty)", "score"])


def step_summary(step: Step, strategy: str) -> str:
    first, last = step.stages[0], step.stages[-1]
    lines = [f"**Step {step.index + 1}** chose <code>{escape(show_token(step.token))}</code> (id {step.token_id}) with "
             f"p = {step.prob:.2%} in the final distribution (raw p = {first.chosen_prob:.2%}, rank "
             f"{first.chosen_rank}). Entropy went from {first.entropy_bits:.2f} to {last.entropy_bits:.2f} bits; "
             f"{last.surviving:,} of {first.surviving:,} tokens could still be picked."]
    if step.draw is not None:
        lines.append(f"The sampler drew **u = {step.draw:.4f}**: walking the final distribution from the most "
                     "likely token, the token whose segment contains u wins. The seed fixes u at every step "
                     "whatever the settings: change temperature or top-p and see where the same draw lands.")
    elif step.contrastive:
        lines.append("Contrastive search picked the candidate with the best score = (1−α)·p(v) − α·max cos sim.")
    else:
        lines.append("Greedy decoding takes the most likely token of the final distribution.")
    return "\n\n".join(lines)


def strip_figure(step: Step) -> Figure:
    """The final distribution as a cumulative strip, with the sampler's draw as a needle."""
    fig = Figure(figsize=(9, 2.3), layout="constrained")
    ax = fig.add_subplot()
    left, colors = 0.0, ["#5c6bc0", "#26a69a", "#ffa726", "#ab47bc", "#66bb6a", "#ef5350"]
    for i, (token_id, token, p) in enumerate(step.strip):
        chosen = token_id == step.token_id
        ax.barh(0, p, left=left, color=colors[i % len(colors)], edgecolor="black" if chosen else "white",
                linewidth=2.5 if chosen else 0.8, hatch="//" if chosen else None)
        if p > 0.04:
            ax.text(left + p / 2, 0, _plot_label(token)[:10], ha="center", va="center", fontsize=8, color="white")
        left += p
    if left < 0.999:
        ax.barh(0, 1 - left, left=left, color="#cfd8dc")
        if 1 - left > 0.06:
            ax.text(left + (1 - left) / 2, 0, "other tokens", ha="center", va="center", fontsize=8)
    if step.draw is not None:
        ax.axvline(step.draw, ymax=0.8, color="black", linewidth=2.5)
        ax.text(step.draw, 0.62, f"u = {step.draw:.3f} → {_plot_label(step.token)}", ha="center", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, 0.8)
    ax.set_yticks([])
    ax.set_xlabel("cumulative probability of the final distribution (tokens sorted by probability)")
    return fig


def temperature_figure(sweep: dict, top_p: float) -> Figure:
    """Next-token probabilities at several temperatures, with where top-p cuts each curve."""
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax = fig.add_subplot()
    x = list(range(len(sweep["tokens"])))
    palette = ["#1e88e5", "#43a047", "#fb8c00", "#e53935", "#8e24aa", "#546e7a"]
    for (t, probs), color in zip(sweep["probs"].items(), palette, strict=False):
        cut = sweep["cut"][t]
        label = f"T = {t:g}" + (f": top-p keeps {cut:,} tokens" if cut is not None else "")
        ax.plot(x, probs, marker="o", color=color, label=label)
        if cut is not None and cut <= len(x):
            ax.axvline(cut - 0.5, color=color, linestyle="--", alpha=0.7)
    ax.set_xticks(x, [_plot_label(t) for t in sweep["tokens"]], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("probability")
    title = "Next token after the prompt"
    if top_p < 1:
        title += f" — dashed: top-p = {top_p:g} keeps the tokens left of the line"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def beams_table(beams) -> pd.DataFrame:
    rows = [[i + 1, b.text, round(b.logprob, 3), round(b.score, 4), b.length] for i, b in enumerate(beams)]
    return pd.DataFrame(rows, columns=["rank", "text", "cumulative log-prob", "score (log-prob / len^lp)",
                                       "tokens"])

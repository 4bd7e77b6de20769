"""Tables, HTML and charts of the Fine-tuning tab, built from the plain records of models/finetune.

No components and no model here: DataFrames for gr.LinePlot / gr.Dataframe, HTML strings with
every piece of user or data text escaped (tabs.common.escape), matplotlib Figures (object API).
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from models.finetune.encoder import FROZEN
from tabs.common import escape

CURVE_COLUMNS = ["step", "value", "series"]
PALETTE = ["#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#546e7a", "#00897b", "#6d4c41"]


def curve(history: list[dict], series: dict[tuple[str, str], str]) -> pd.DataFrame:
    """Long-format points for gr.LinePlot: `series` maps (event kind, field) to a legend name."""
    rows = [[e["step"], e[name], label] for e in history for (kind, name), label in series.items()
            if e.get("kind") == kind and name in e]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


CLASSIFIER_SERIES = {("loss", "loss"): "training loss", ("eval", "accuracy"): "validation accuracy",
                     ("eval", "f1"): "validation F1"}
LORA_SERIES = {("loss", "loss"): "training loss", ("eval", "loss"): "held-out loss"}


def percent(part: int, whole: int) -> str:
    share = 100 * part / whole if whole else 0.0
    return f"{share:.2f}%" if share >= 0.01 else f"{share:.4f}%"


def parameters_html(description: str, trainable: int, total: int) -> str:
    """A bar: how much of the model this regime trains."""
    width = max(0.4, 100 * trainable / total) if total else 0
    return (f"<div class='ft-params'><b>{escape(description)}</b>: {trainable:,} trainable of {total:,} parameters "
            f"(<b>{percent(trainable, total)}</b>)<div style='background:#e0e0e0;height:10px;border-radius:4px'>"
            f"<div style='background:#1e88e5;width:{width:.2f}%;height:10px;border-radius:4px'></div></div></div>")


def scores_table(run) -> pd.DataFrame:
    rows = [["zero-shot baseline", f"{run.baseline.accuracy:.1%}", f"{run.baseline.f1:.3f}"],
            [f"fine-tuned (best step {run.best_step})", f"{run.final.accuracy:.1%}", f"{run.final.f1:.3f}"]]
    return pd.DataFrame(rows, columns=["model", "validation accuracy", "validation F1"])


def confusion_html(labels: tuple[str, ...], confusion) -> str:
    head = "".join(f"<th>{escape(label)}</th>" for label in labels)
    peak = max((max(row) for row in confusion), default=1) or 1
    body = ""
    for label, row in zip(labels, confusion, strict=True):
        cells = "".join(f"<td style='background:rgba(30,136,229,{0.08 + 0.6 * v / peak:.2f})'>{v}</td>" for v in row)
        body += f"<tr><th>{escape(label)}</th>{cells}</tr>"
    return (f"<table class='ft-confusion'><caption>rows: true label · columns: predicted</caption>"
            f"<tr><th></th>{head}</tr>{body}</table>")


def errors_table(run) -> pd.DataFrame:
    columns = ["sentence", "second sentence", "true", "predicted", "confidence"] if run.pair else \
        ["sentence", "true", "predicted", "confidence"]
    rows = [[e["text"], *([e["text_b"]] if run.pair else []), e["true"], e["predicted"], f"{e['confidence']:.0%}"]
            for e in run.errors]
    return pd.DataFrame(rows, columns=columns)


def padding_markdown(stats: dict, frozen: bool) -> str:
    if not stats.get("fixed_tokens"):
        return ""
    where = "the one encoding pass (the encoder is frozen)" if frozen else "training and evaluation batches"
    return (f"**Dynamic padding** ({where}): {stats['real_tokens']:,} real tokens became {stats['dynamic_tokens']:,} "
            f"once each batch was padded to its longest sentence; padding every sentence to "
            f"{stats['fixed_length']} tokens would have made {stats['fixed_tokens']:,} — "
            f"**{stats['saved_vs_fixed']:.0%} fewer tokens** through the encoder.")


def summary_markdown(run, notes: list[str]) -> str:
    gain = run.final.accuracy - run.baseline.accuracy
    lines = [f"**{escape(run.task)}**: validation accuracy {run.baseline.accuracy:.1%} → **{run.final.accuracy:.1%}** "
             f"({gain:+.1%} over the zero-shot baseline), F1 {run.baseline.f1:.3f} → **{run.final.f1:.3f}**, "
             f"{run.steps_done} steps in {run.seconds:.1f} s. Zero-shot baseline: {escape(run.baseline_name)}. "
             "The checkpoint with the best validation accuracy "
             f"(step {run.best_step}) is kept, as load_best_model_at_end does: the validation set picks it, so its "
             "score is slightly optimistic."]
    return _with_notes(lines, run, notes)


def _with_notes(lines: list[str], run, notes: list[str]) -> str:
    if run.stopped:
        lines.append("⏹ Stopped early: the best checkpoint so far is kept.")
    return "\n\n".join([*lines, *(f"ℹ️ {escape(n)}" for n in notes)])


def compared_table(rows: list[dict]) -> pd.DataFrame:
    columns = ["task", "regime", "trainable", "% of model", "optimizer", "lr", "steps", "seconds",
               "accuracy", "F1", "zero-shot accuracy"]
    return pd.DataFrame([[r[c] for c in columns] for r in rows], columns=columns)


def compared_row(run) -> dict:
    return {"task": run.task, "regime": run.config.regime.describe(), "trainable": f"{run.trainable:,}",
            "% of model": percent(run.trainable, run.total), "optimizer": run.config.optimizer,
            "lr": f"{run.config.learning_rate:g}", "steps": run.steps_done, "seconds": round(run.seconds, 1),
            "accuracy": f"{run.final.accuracy:.1%}", "F1": f"{run.final.f1:.3f}",
            "zero-shot accuracy": f"{run.baseline.accuracy:.1%}"}


def change_figure(run) -> Figure:
    """What training moved: each validation pair's cosine before vs after, or a 2-D map of sentences."""
    change, frozen = run.change, run.config.regime.kind == FROZEN
    if run.pair:
        fig = Figure(figsize=(5.2, 4.2), layout="constrained")
        ax = fig.add_subplot()
        for index, label in enumerate(run.labels):
            xs = [b for b, y in zip(change["cos_before"], change["labels"], strict=True) if y == index]
            ys = [a for a, y in zip(change["cos_after"], change["labels"], strict=True) if y == index]
            ax.scatter(xs, ys, s=18, alpha=0.75, color=PALETTE[index % len(PALETTE)], label=label)
        ax.plot([-1, 1], [-1, 1], color="#9e9e9e", linewidth=1, linestyle="--")
        low = min(change["cos_before"] + change["cos_after"]) - 0.05
        ax.set_xlim(low, 1.01)
        ax.set_ylim(low, 1.01)
        ax.set_xlabel("cosine of the pair before training")
        ax.set_ylabel("after training")
        ax.set_title("The encoder was frozen: no embedding moved, only the head learned" if frozen else
                     "Validation pairs: above the line = the two embeddings moved closer", fontsize=9)
        ax.legend(fontsize=8)
        return fig
    fig = Figure(figsize=(9, 4), layout="constrained")
    for col, (key, title) in enumerate((("before", "before training"), ("after", "after training"))):
        ax = fig.add_subplot(1, 2, col + 1)
        for index, label in enumerate(run.labels):
            points = [p for p, y in zip(change[key], change["labels"], strict=True) if y == index]
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, alpha=0.8,
                       color=PALETTE[index % len(PALETTE)], label=label)
        ax.set_title(f"Validation sentences {title} (PCA)" + (" — frozen: unchanged" if frozen and col else ""),
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.axes[0].legend(fontsize=8)
    return fig


def prediction_markdown(result: dict) -> str:
    if "cosine_before" not in result:
        return ""
    return (f"Cosine of the two sentence embeddings: **{result['cosine_before']:.3f}** with the pretrained encoder, "
            f"**{result['cosine_after']:.3f}** with this session's model.")


def answers_html(before: list[dict], after: list[dict]) -> str:
    rows = "".join(f"<tr><td>{escape(b['prompt'])}</td><td>{escape(b['answer'])}</td>"
                   f"<td>{escape(a['answer'])}</td></tr>" for b, a in zip(before, after, strict=True))
    return (f"<table class='ft-answers'><tr><th>held-out prompt</th><th>before (base SmolLM2)</th>"
            f"<th>after (with the LoRA adapter)</th></tr>{rows}</table>")


def _token_strip(pieces: list[tuple[str, float]]) -> str:
    spans = "".join(f"<span title='p = {p:.3f}' style='background:rgba(67,160,71,{0.1 + 0.8 * p:.2f});"
                    f"padding:1px 2px;margin:1px;border-radius:3px;display:inline-block'>"
                    f"{escape(token.replace(' ', '␣'))}<sub>{p:.2f}</sub></span>" for token, p in pieces)
    return f"<div class='ft-strip'>{spans}</div>"


def probe_html(probe: dict) -> str:
    """The target response's tokens, coloured by their probability before and after tuning."""
    def mean(pieces):
        return sum(p for _, p in pieces) / max(len(pieces), 1)

    return (f"<p>Held-out prompt <b>{escape(probe['prompt'])}</b> — the probability of each token of the "
            f"trained style's answer:</p><p>before (mean p = {mean(probe['before']):.2f}):</p>"
            f"{_token_strip(probe['before'])}<p>after (mean p = {mean(probe['after']):.2f}):</p>"
            f"{_token_strip(probe['after'])}")


def lora_markdown(run, notes: list[str]) -> str:
    lines = [f"LoRA r={run.config.rank} on q/k/v/o: **{run.trainable:,}** trainable parameters of {run.total:,} "
             f"(**{percent(run.trainable, run.total)}**). Held-out loss per answer token "
             f"{run.heldout_loss[0]:.2f} → **{run.heldout_loss[1]:.2f}**; {run.steps_done} steps, {run.seconds:.1f} s."]
    return _with_notes(lines, run, notes)


def merge_markdown(report: dict) -> str:
    same = "the same answer" if report["adapter"] == report["merged"] else "a different answer (rounding)"
    return (f"Merged the adapter into the weights: {report['parameters_with_adapter']:,} → "
            f"{report['parameters_merged']:,} parameters (the base model's count), {same}, largest logit "
            f"difference {report['max_logit_difference']:.2e}.")

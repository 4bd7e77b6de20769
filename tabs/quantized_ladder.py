"""Quantized tab, second half: the GGUF ladder and per-group sensitivity.

What it teaches: the curve people know from llama.cpp. The same weights stored in each of the
model's own GGUF formats (BF16, Q8_0 ... the ternary TQ1_0) and read back: 8 bits is practically
free, 4 bits costs a little, below that quality falls off a cliff, measured with llama.cpp's
`--kl-divergence` statistics beside a noise floor. Then which weights are sensitive: each group
alone in a format, and toggles to keep chosen groups in float32 and see what that buys.
`build(cache, model, settings)` is called by tabs/quantized.py inside its Blocks.
"""

from __future__ import annotations

import gradio as gr

from models.quant import gguf_formats as gf
from models.quant import ladder, sensitivity
from models.quant import tensors as qt
from models.registry import CHAT
from tabs import quantized_ladder_views as views
from tabs.common import model_queue, user_errors

MAX_FORMATS = len(gf.LADDER)
DEFAULT_SENSITIVITY_FORMAT = "Q4_0"

INTRO = """## The GGUF ladder: the model's own formats, from 16 bits to 1.7
llama.cpp stores weights in *blocks*: 32 (or 256) numbers share one scale, and each number keeps a
few bits. Here every weight matrix is stored in each GGUF format and read back (the `gguf` package's
own code), and the model reads the bundled reference text again. The table speaks llama.cpp's
language (`llama-perplexity --kl-divergence`): mean KL and its 99th percentile, **Δp** = how much
less (negative) or more likely the quantized model finds each real next token, and **same top-1**.
Recipe (llama-quantize's, without an importance matrix): every linear layer in the format; the tied
embedding / output layer as Q8_0 (llama.cpp asks for Q6_K, whose 256-blocks do not fit 576-wide
rows, and falls back to Q8_0); norms in F32. Each format takes seconds to a minute the first time,
then it is kept (also on disk)."""

SENSITIVITY_INTRO = """### Which weights are sensitive?
Each group of weights alone in the chosen format, everything else float32: the bar is the KL that
group causes by itself. Then tick groups to keep them in float32 while **every other group**
(embeddings included) takes the format, and see what that buys and what it costs in size."""


def _formats(names) -> list[str]:
    """The API's `formats`: a list (or one comma-separated string) of ladder names, checked."""
    if isinstance(names, str):
        names = names.split(",")
    names = [str(n) for n in (names or [])][:MAX_FORMATS * 2]
    if not names:
        raise ValueError("Choose at least one format.")
    return sorted({gf.format_named(n).name for n in names}, key=list(gf.FORMATS).index)


def _progress(progress):
    return lambda fraction, text: progress(min(max(fraction, 0.0), 1.0), desc=text)


def group_choices(model_key: str) -> list[tuple[str, str]]:
    """(label, group) of the groups a model has (the encoder has no gate projection)."""
    return [(qt.label(g, model_key), g) for g in qt.GROUP_LABELS if qt.label(g, model_key)]


def build(cache, model: gr.Radio, settings) -> None:
    gr.Markdown(INTRO, elem_id="quant-ladder-intro")
    baseline = gr.Markdown(elem_id="quant-ladder-baseline")
    with gr.Row():
        formats = gr.CheckboxGroup([f.name for f in gf.LADDER], value=[f.name for f in gf.LADDER],
                                   label="Formats (finest first)", scale=4, elem_id="quant-ladder-formats")
        ladder_btn = gr.Button("Run the ladder", variant="primary", scale=1, elem_id="quant-ladder-run")
    ladder_table = gr.Dataframe(label="ladder", interactive=False, wrap=True, elem_id="quant-ladder-table")
    ladder_plot = gr.Plot(label="bits per weight vs loss", format="png", show_label=False, elem_id="quant-ladder-plot")
    ladder_notes = gr.Markdown(elem_id="quant-ladder-notes")
    gr.Markdown(SENSITIVITY_INTRO)
    with gr.Row():
        sens_format = gr.Dropdown([f.name for f in gf.LADDER], value=DEFAULT_SENSITIVITY_FORMAT,
                                  label="Format for the groups", scale=2)
        sens_btn = gr.Button("Measure each group", scale=1, elem_id="quant-sens-run")
    sens_plot = gr.Plot(label="KL per group", format="png", show_label=False, elem_id="quant-sens-plot")
    sens_table = gr.Dataframe(label="each group alone", interactive=False, wrap=True, elem_id="quant-sens-table")
    keep = gr.CheckboxGroup(group_choices(CHAT), value=["down_proj"],
                            label="Keep in float32 (all other groups in the format)", elem_id="quant-keep")
    keep_table = gr.Dataframe(label="the mix", interactive=False, wrap=True, elem_id="quant-keep-table")

    # ---- plain functions: what the API and the listeners run -------------------------------
    def ladder_rows(model_key, names, report=None) -> list[dict]:
        chosen = _formats(names if names is not None else [f.name for f in gf.LADDER])
        return ladder.ladder_rows(cache, ladder.check_model(model_key), chosen, report)

    def group_rows(model_key, fmt, report=None) -> list[dict]:
        return sensitivity.group_rows(cache, ladder.check_model(model_key), fmt, report)

    def keep_row(model_key, fmt, kept, report=None) -> dict:
        kept = [kept] if isinstance(kept, str) else list(kept or [])[:len(qt.GROUP_LABELS) * 2]
        return sensitivity.keep_full_row(cache, ladder.check_model(model_key), fmt, kept, report)

    def quant_ladder(model: str = CHAT, formats: list[str] | None = None) -> list[dict]:
        """The GGUF ladder of a model ("chat" = SmolLM2, "encoder" = MiniLM): float32, the noise floor,
        then one row per format with format, bits_per_weight, size_mb, perplexity, mean_kl, kl_p99,
        same_top1 and llama.cpp's Δp statistics (encoder: mean_cosine, overlap_at_k)."""
        return ladder_rows(model, formats)

    def quant_sensitivity(model: str = CHAT, format: str = DEFAULT_SENSITIVITY_FORMAT) -> list[dict]:
        """Each group of weights alone in one GGUF format: the loss it causes against float32."""
        return group_rows(model, format)

    def quant_keep_full(model: str = CHAT, format: str = DEFAULT_SENSITIVITY_FORMAT,
                        kept: list[str] | None = None) -> dict:
        """Every group in the format except `kept` (kept in float32): the mix's quality and size."""
        return keep_row(model, format, kept)

    # ---- listeners: the same functions, with progress, drawn -------------------------------
    def ladder_ui(model_key, names, progress=gr.Progress()):
        rows = ladder_rows(model_key, names, _progress(progress))
        packaged = ladder.baseline_is_packaged_gguf(cache, model_key)
        return (ladder.baseline_note(cache, model_key), views.table(rows),
                views.ladder_figure(rows, model_key != CHAT), views.ladder_notes(rows, packaged))

    def sensitivity_ui(model_key, fmt, progress=gr.Progress()):
        rows = group_rows(model_key, fmt, _progress(progress))
        choices = [(r["label"], r["group"]) for r in rows]
        return (views.sensitivity_figure(rows, fmt, model_key != CHAT), views.table(rows),
                gr.CheckboxGroup(choices=choices))

    def keep_ui(model_key, fmt, kept, progress=gr.Progress()):
        return views.table([keep_row(model_key, fmt, kept, _progress(progress))])

    queue = model_queue(settings)
    hidden = {"api_visibility": "undocumented"}  # the buttons' handlers: not on the API page (quant_ladder etc. are)
    model.change(lambda key: gr.CheckboxGroup(choices=group_choices(key), value=["down_proj"]), model, keep,
                 api_name="quant_keep_groups", api_visibility="private")
    ladder_btn.click(user_errors(ladder_ui), [model, formats], [baseline, ladder_table, ladder_plot, ladder_notes],
                     api_name="quant_ladder_view", **hidden, **queue)
    sens_btn.click(user_errors(sensitivity_ui), [model, sens_format], [sens_plot, sens_table, keep],
                   api_name="quant_sensitivity_view", **hidden, **queue).success(
        user_errors(keep_ui), [model, sens_format, keep], keep_table, api_name="quant_keep_view", **hidden, **queue)
    keep.input(user_errors(keep_ui), [model, sens_format, keep], keep_table, api_name="quant_keep_toggle",
               trigger_mode="always_last", **hidden, **queue)
    gr.api(user_errors(quant_ladder), api_name="quant_ladder", **queue)
    gr.api(user_errors(quant_sensitivity), api_name="quant_sensitivity", **queue)
    gr.api(user_errors(quant_keep_full), api_name="quant_keep_full", **queue)

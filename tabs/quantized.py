"""Quantized vs full: the same model in fp32 and quantized, side by side, with every cost and loss.

A student types a prompt; both models answer greedily in two columns and the first token where
they part ways is marked. Below: size, memory, build time, first-token latency and tokens/s of
each scheme (with fp32-vs-fp32 as the noise floor), quality on a bundled reference text
(perplexity, mean KL, same top-1, llama.cpp's definitions), a token strip coloured by KL,
where the bytes went, and which kernel this CPU really ran.
"""

from __future__ import annotations

from itertools import zip_longest

import gradio as gr
import pandas as pd

from models import hardware
from models.chat import eos_ids
from models.quant import report, run
from models.quant import schemes as qs
from models.registry import CHAT, ENCODER
from tabs import quantized_views as views
from tabs.common import model_queue, user_errors

INTRO = """## Quantized vs full
Quantization stores weights with fewer bits (8 or 4 instead of 32). It makes a model smaller, often
faster, and a little different. Here both versions run on this CPU, on your prompt, and every cost
and every loss is measured — next to a **noise floor** (fp32 against itself) so you can tell a real
difference from timing noise."""

DEFAULT_PROMPT = "Explain in two sentences what a lighthouse keeper does."


def model_choices(registry) -> list[tuple[str, str]]:
    return [(f"Causal LM: {registry.specs[CHAT].display_name}", CHAT),
            (f"Encoder: {registry.specs[ENCODER].display_name}", ENCODER)]


def scheme_choices(model_key: str) -> list[tuple[str, str]]:
    return [(s.label, s.key) for s in qs.schemes_for(model_key)]


def source_note(registry, model_key: str) -> str:
    """Where the 'full' weights came from; offline, SmolLM2's fp32 is itself a dequantized GGUF."""
    spec, src = registry.specs[model_key], registry.resolve(model_key)
    if spec.package and spec.package.fmt == "gguf" and src.origin in ("package", "cache"):
        return (f"Note: offline, the 'full' {spec.display_name} is fp32 *dequantized from the packaged "
                f"Q4_1 GGUF* ({spec.package.filename}), so its weights already carry 4-bit rounding; "
                "on a Space the hub's original weights are used.")
    return f"Full weights: {src.describe()}."


def _check(prompt: str) -> str:
    if not prompt or not prompt.strip():
        raise gr.Error("Type a prompt first.")
    if len(prompt) > report.MAX_PROMPT_CHARS:
        raise gr.Error(f"The prompt is {len(prompt)} characters; keep it under {report.MAX_PROMPT_CHARS} "
                       "so the comparison stays quick.")
    return prompt.strip()


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).astype(object).where(pd.DataFrame(rows).notna(), "")


def _progress(progress):
    return lambda fraction, text: progress(min(max(fraction, 0.0), 1.0), desc=text)


def stream_chat(registry, key: str, prompt: str, max_new: int, progress):
    """Greedy tokens of fp32 and the scheme, interleaved one step at a time."""
    lm = registry.chat_model()
    built = qs.quantized(registry, CHAT, key, _progress(progress))
    ids, eos = run.chat_ids(lm.tokenizer, prompt), eos_ids(lm.tokenizer, lm.model)
    full_ids, quant_ids = [], []
    steps = zip_longest(run.greedy(lm.model, ids, max_new, eos), run.greedy(built.model, ids, max_new, eos))
    note = source_note(registry, CHAT)

    def render(done: bool):
        at = run.first_divergence(full_ids, quant_ids) if done else _diverged(full_ids, quant_ids)
        full_tokens = [lm.tokenizer.decode([t]) for t in full_ids]
        quant_tokens = [lm.tokenizer.decode([t]) for t in quant_ids]
        return (views.column(full_tokens, at, "fp32 (full)", done),
                views.column(quant_tokens, at, built.label, done), at)

    for a, b in steps:
        if a is not None:
            full_ids.append(a[0])
        if b is not None:
            quant_ids.append(b[0])
        left, right, _ = render(False)
        yield f"Generating greedily with both models… {note}", left, right, ""
    left, right, at = render(True)
    if at is None:
        status = f"Identical: both models produced the same {len(full_ids)} tokens."
    else:
        status = (f"The outputs diverge at token {at + 1} (boxed). Before it, the quantized model chose "
                  "exactly what fp32 chose; after it, each continues from a different text.")
    rows = run.token_strip(lm.model, built.model, lm.tokenizer, ids, full_ids)
    yield f"{status}\n\n{note}", left, right, views.kl_strip(rows, built.label)


def _diverged(a: list, b: list) -> int | None:
    """Divergence while streaming: only where both have a token."""
    at = run.first_divergence(a, b)
    return at if at is not None and at < min(len(a), len(b)) else None


def stream_encoder(registry, key: str, prompt: str, progress):
    """Top-k retrieval for the prompt with both encoders; the strip shows per-sentence drift."""
    built = qs.quantized(registry, ENCODER, key, _progress(progress))
    full = qs.full(registry, ENCODER)
    sentences, _ = run.encoder_eval()
    a = run.retrieve(full.model, prompt, sentences)
    b = run.retrieve(built.model, prompt, sentences)
    at = run.first_divergence([s for s, _ in a], [s for s, _ in b])
    status = ("Same ranking for your prompt." if at is None else
              f"The rankings differ from rank {at + 1} (boxed).")
    status += (f" Your prompt is used as a search query over {len(sentences)} bundled sentences; "
               "cosine scores in brackets.")
    base_s, other_s = (run.encoder_vectors(registry, k)[0] for k in (qs.FULL, key))
    cosines = (base_s * other_s).sum(1).tolist()
    yield (status, views.ranking(a, at, "fp32 (full)"), views.ranking(b, at, built.label),
           views.sentence_strip(sentences, cosines, built.label))


@user_errors
def compare_stream(registry, model_key: str, key: str, prompt: str, max_new: float, progress=gr.Progress()):
    """Listener: both outputs, streamed, then the divergence and the KL strip."""
    prompt = _check(prompt)
    try:
        qs.scheme(model_key, key)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    if model_key == CHAT:
        yield from stream_chat(registry, key, prompt, int(max_new), progress)
    else:
        yield from stream_encoder(registry, key, prompt, progress)


@user_errors
def compare_table(registry, model_key: str, prompt: str, max_new: float, progress=gr.Progress()):
    """Listener (api quant_compare): the cost table for every scheme on this prompt."""
    prompt = _check(prompt)
    try:
        rows = report.compare_table(registry, model_key, prompt, int(max_new), _progress(progress))
    except ValueError as exc:  # bad model key or token count: say so plainly
        raise gr.Error(str(exc)) from None
    return _table(rows)


def charts(table: pd.DataFrame):
    """Bar charts (size, speed, first-token latency) from the cost table, no model call."""
    if table is None or len(table) == 0 or "scheme" not in table:
        return None, None, None
    ms = next(c for c in table.columns if c.endswith("(ms)"))

    order = list(table["scheme"])

    def frame(col):
        df = table[["scheme", col]].rename(columns={col: "value"})
        df["value"] = pd.to_numeric(df["value"], errors="coerce")
        return gr.BarPlot(df.dropna(), sort=order)  # table order, not alphabetical

    return frame("size (MB)"), frame("tokens/s"), frame(ms)


@user_errors
def details(registry, model_key: str, progress=gr.Progress()):
    """Listener: quality on the reference set, where the bytes went, hardware and kernels."""
    progress(0.1, desc="quality on the reference text (cached after the first run)")
    quality = _table(report.quality_rows(registry, model_key))
    progress(0.6, desc="where the bytes went")
    bytes_rows = report.bytes_rows(registry, model_key)
    progress(0.8, desc="profiling kernels")
    kernels = _table(report.kernel_rows(registry, model_key))
    info = hardware.summary()
    order = [r["scheme"] for r in bytes_rows]
    chart = gr.BarPlot(pd.DataFrame(report.bytes_long(bytes_rows)), sort=order)
    return (quality, _table(bytes_rows), chart,
            hardware.explain(info), kernels)


def build(services, settings) -> None:
    registry = services.registry
    gr.HTML(views.CSS)
    gr.Markdown(INTRO)
    with gr.Row():
        model = gr.Radio(model_choices(registry), value=CHAT, label="Model", scale=2)
        scheme = gr.Dropdown(scheme_choices(CHAT), value=qs.schemes_for(CHAT)[0].key,
                             label="Quantized scheme for the side-by-side", scale=2,
                             allow_custom_value=True)  # choices follow the model; checked in the handler
        max_new = gr.Slider(1, report.MAX_NEW_TOKENS, value=24, step=1, label="New tokens (causal LM)", scale=1,
                            elem_id="quant-max-new")
    prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt (for the encoder: a search query)", lines=2,
                        elem_id="quant-prompt")
    run_btn = gr.Button("Compare", variant="primary", elem_id="quant-run")
    status = gr.Markdown(elem_id="quant-status")
    with gr.Row(equal_height=True):
        full_out = gr.HTML(elem_id="quant-full")
        quant_out = gr.HTML(elem_id="quant-quant")
    gr.Markdown("### Token strip")
    strip = gr.HTML(elem_id="quant-strip")
    gr.Markdown("### Cost per scheme\nSerialized size, resident memory the build added, build time, "
                "time to first token (for the encoder: time to embed your prompt), decoding speed. "
                "*fp32 again* is the same model timed twice: its speed-up shows the noise.")
    table = gr.Dataframe(label="cost table", interactive=False, wrap=True, elem_id="quant-table")
    with gr.Row():
        plot = {"x": "scheme", "y": "value", "sort": None, "height": 260, "y_lim": [0, None],
                "x_label_angle": -25}
        size_plot = gr.BarPlot(title="Serialized size (MB)", **plot)
        speed_plot = gr.BarPlot(title="Tokens per second", **plot)
        ttft_plot = gr.BarPlot(title="First token / prompt latency (ms)", **plot)
    gr.Markdown("### Quality on the bundled reference text\nCausal LM: perplexity = exp(mean NLL of "
                "each next token); mean KL = KL(P_fp32 ‖ P_quant) averaged over positions; same top-1 "
                "= % of positions with the same most likely token (llama.cpp's `--kl-divergence` "
                "report). Encoder: mean cosine of fp32 and quantized embeddings; overlap@3 of "
                "retrieval results for 10 queries. The 1-thread row is the noise floor.\n\n"
                "Why int8 hurts SmolLM2 more than int4: dynamic int8 also rounds the *activations*, "
                "with one scale per tensor, and SmolLM2's MLP down-projections see large activation "
                "outliers that squeeze every other value into a few levels (measured here: keeping "
                "just the down-projections in fp32 brings the int8 perplexity from ~80 back to ~30). "
                "int4 weight-only rounds weights harder but keeps activations in bf16.")
    quality = gr.Dataframe(label="quality", interactive=False, elem_id="quant-quality")
    gr.Markdown("### Where the bytes went\nMB per part of the model. Linear-only schemes leave the "
                "embeddings at full precision, and quantizing SmolLM2's lm_head breaks its tie with "
                "the embedding matrix, so the output layer is stored a second time. *Best possible*: "
                "every weight at the scheme's bit width.")
    bytes_table = gr.Dataframe(label="bytes", interactive=False)
    bytes_plot = gr.BarPlot(x="scheme", y="MB", color="part", title="Serialized MB by part", sort=None,
                            height=260)
    gr.Markdown("### Hardware")
    hardware_md = gr.Markdown(elem_id="quant-hardware")
    kernels = gr.Dataframe(label="kernels each model really ran (torch profiler / ONNX graph)",
                           interactive=False, wrap=True)

    # ---- register listeners ---------------------------------------------------------------
    def on_model(model_key):
        choices = scheme_choices(model_key)
        return gr.Dropdown(choices=choices, value=choices[0][1])

    def stream(model_key, key, text, n, progress=gr.Progress()):
        yield from compare_stream(registry, model_key, key, text, n, progress)

    def table_fn(model_key, text, n, progress=gr.Progress()):
        return compare_table(registry, model_key, text, n, progress)

    def details_fn(model_key, progress=gr.Progress()):
        return details(registry, model_key, progress)

    model.change(on_model, model, scheme, api_name="quant_schemes")
    (run_btn.click(stream, [model, scheme, prompt, max_new], [status, full_out, quant_out, strip],
                   api_name="quant_stream", **model_queue(settings))
     .success(table_fn, [model, prompt, max_new], table, api_name="quant_compare", **model_queue(settings))
     .success(charts, table, [size_plot, speed_plot, ttft_plot], api_name="quant_charts")
     .success(details_fn, model, [quality, bytes_table, bytes_plot, hardware_md, kernels],
              api_name="quant_details", **model_queue(settings)))

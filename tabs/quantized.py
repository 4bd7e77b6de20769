"""Quantized vs full: the same model in fp32 and quantized, side by side, with every cost and loss.

A student types a prompt; both models answer greedily in two columns and the first token where
they part ways is marked. Below: size, memory, build time, first-token latency and tokens/s of
each scheme (with fp32-vs-fp32 as the noise floor), quality on a bundled reference text
(perplexity, KL mean and p99, Δp, same top-1: llama.cpp's `--kl-divergence` statistics), a token
strip coloured by KL, where the bytes went, and which kernel this CPU really ran. Then the GGUF
ladder and per-group sensitivity (tabs/quantized_ladder.py): the 8-bit-is-free, 4-bit-costs-a-little,
below-that-a-cliff curve, in the model's own llama.cpp formats.
"""

from __future__ import annotations

import gradio as gr

from models import hardware
from models.lessons.warmup import Need
from models.quant import compare, report, run
from models.quant import schemes as qs
from models.quant.cache import QuantCache
from models.quant.inputs import MAX_NEW_TOKENS
from models.registry import CHAT, ENCODER
from models.time_limit import within
from tabs import quantized_ladder
from tabs import quantized_views as views
from tabs.common import model_queue, user_errors
from tabs.handles import Action, Call, TabHandle

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


def source_note(weights: compare.FullWeights) -> str:
    """Where the 'full' weights came from; offline, SmolLM2's fp32 is itself a dequantized GGUF."""
    if weights.gguf_file:
        return (f"Note: offline, the 'full' {weights.display_name} is fp32 *dequantized from the packaged "
                f"Q4_1 GGUF* ({weights.gguf_file}), so its weights already carry 4-bit rounding; "
                "on a Space the hub's original weights are used.")
    return f"Full weights: {weights.description}."


def _progress(progress):
    return lambda fraction, text: progress(min(max(fraction, 0.0), 1.0), desc=text)


def chat_view(result: compare.ChatSideBySide) -> tuple[str, str, str, str]:
    """(status, fp32 column, quantized column, KL strip) of one snapshot of the greedy outputs."""
    note = source_note(result.weights)
    left = views.column(list(result.full_tokens), result.diverge_at, "fp32 (full)", result.done)
    right = views.column(list(result.quant_tokens), result.diverge_at, result.label, result.done)
    if not result.done:
        return f"Generating greedily with both models… {note}", left, right, ""
    if result.diverge_at is None:
        status = f"Identical: both models produced the same {len(result.full_tokens)} tokens."
    else:
        status = (f"The outputs diverge at token {result.diverge_at + 1} (boxed). Before it, the quantized "
                  "model chose exactly what fp32 chose; after it, each continues from a different text.")
    return f"{status}\n\n{note}", left, right, views.kl_strip(list(result.strip), result.label)


def encoder_view(result: compare.EncoderSideBySide) -> tuple[str, str, str, str]:
    """(status, fp32 ranking, quantized ranking, sentence strip) of the encoder comparison."""
    at = result.diverge_at
    status = "Same ranking for your prompt." if at is None else f"The rankings differ from rank {at + 1} (boxed)."
    status += (f" Your prompt is used as a search query over {len(result.sentences)} bundled sentences; "
               "cosine scores in brackets.")
    return (status, views.ranking(result.full_hits, at, "fp32 (full)"),
            views.ranking(result.quant_hits, at, result.label),
            views.sentence_strip(result.sentences, result.cosines, result.label))


@user_errors
def compare_stream(cache: QuantCache, model_key: str, key: str, prompt: str, max_new: float, time_limit_s: float,
                   progress=gr.Progress()):
    """Listener: both outputs, streamed, then the divergence and the KL strip; closed at the time
    limit with the tokens so far (both models stop at their next token)."""
    try:
        results = compare.side_by_side(cache, model_key, key, prompt, max_new, _progress(progress))
    except ValueError as exc:  # the request's own message: empty, too long, unknown scheme
        raise gr.Error(str(exc)) from None
    stopped = (f"Stopped after {time_limit_s:g} s: on this shared server every comparison has a time limit. "
               "The tokens so far are shown.")
    timed_out, done = [], True
    for result in within(results, time_limit_s, on_timeout=lambda: timed_out.append(True)):
        done = getattr(result, "done", True)  # the limit may pass just as the last snapshot comes out
        yield chat_view(result) if isinstance(result, compare.ChatSideBySide) else encoder_view(result)
    if timed_out and not done:
        gr.Warning(stopped)


@user_errors
def compare_table(cache: QuantCache, model_key: str, prompt: str, max_new: float, progress=gr.Progress()):
    """Listener (api quant_compare): the cost table for every scheme on this prompt, and its rows
    (kept in the session's state for the charts)."""
    try:
        cost = report.compare_table(cache, model_key, prompt, max_new, _progress(progress))
    except ValueError as exc:  # bad model key, prompt or token count: say so plainly
        raise gr.Error(str(exc)) from None
    return views.table(cost.rows), cost


def charts(cost: report.CostTable | None):
    """Listener (api quant_charts): bar charts of size, speed and first-token latency, no model call."""
    return views.cost_charts(cost)


@user_errors
def details(cache: QuantCache, model_key: str, progress=gr.Progress()):
    """Listener: quality on the reference set, where the bytes went, hardware and kernels."""
    progress(0.1, desc="quality on the reference text (cached after the first run)")
    quality = views.table(report.quality_rows(cache, model_key))
    progress(0.6, desc="where the bytes went")
    bytes_rows = report.bytes_rows(cache, model_key)
    progress(0.8, desc="profiling kernels")
    kernels = views.table(report.kernel_rows(cache, model_key))
    return (quality, views.table(bytes_rows), views.bytes_chart(bytes_rows),
            hardware.explain(hardware.summary()), kernels)


def warm(cache: QuantCache, model_key: str) -> None:
    """Build what the Compare chain builds once per process (every scheme, the reference scores,
    the bytes and the kernels), so a class's first Compare only times the models."""
    report.quality_rows(cache, model_key)
    report.bytes_rows(cache, model_key)
    report.kernel_rows(cache, model_key)


def warmed(cache: QuantCache, model_key: str) -> bool:
    """True once `warm` (or a first Compare, which builds in the same order) has finished."""
    return all((model_key, key) in cache.kernels for key in [qs.FULL, *(s.key for s in qs.schemes_for(model_key))])


def warm_ups(cache: QuantCache, registry) -> list[Need]:
    """Lesson warm-ups (GENAI_LAB_WARMUP): each model's quantized builds and reference scores."""
    return [Need(f"quant-{key}", f"{registry.specs[key].display_name}'s quantized builds and reference scores",
                 lambda key=key: warm(cache, key), lambda key=key: warmed(cache, key)) for key in (CHAT, ENCODER)]


def build(services, settings) -> TabHandle:
    registry = services.registry
    cache = QuantCache(registry)  # quantized builds, reference logits, vectors, kernels: once per app
    _, queries = run.encoder_eval()
    gr.HTML(views.CSS)
    gr.Markdown(INTRO)
    with gr.Row():
        model = gr.Radio(model_choices(registry), value=CHAT, label="Model", scale=2)
        scheme = gr.Dropdown(scheme_choices(CHAT), value=qs.schemes_for(CHAT)[0].key,
                             label="Quantized scheme for the side-by-side", scale=2,
                             allow_custom_value=True)  # choices follow the model; checked in the handler
        max_new = gr.Slider(1, MAX_NEW_TOKENS, value=24, step=1, label="New tokens (causal LM)", scale=1,
                            elem_id="quant-max-new")
    prompt = gr.Textbox(DEFAULT_PROMPT, label="Prompt (for the encoder: a search query)", lines=2,
                        elem_id="quant-prompt")
    with gr.Row():
        run_btn = gr.Button("Compare", variant="primary", elem_id="quant-run", scale=3)
        stop_btn = gr.Button("Stop", variant="stop", elem_id="quant-stop", scale=1)
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
    cost = gr.State()  # the cost rows behind the table, for the charts
    with gr.Row():
        plot = {"x": "scheme", "y": "value", "sort": None, "height": 260, "y_lim": [0, None],
                "x_label_angle": -25}
        size_plot = gr.BarPlot(title="Serialized size (MB)", **plot)
        speed_plot = gr.BarPlot(title="Tokens per second", **plot)
        ttft_plot = gr.BarPlot(title="First token / prompt latency (ms)", **plot)
    gr.Markdown("### Quality on the bundled reference text\nCausal LM, in llama.cpp's `--kl-divergence` "
                "terms: perplexity = exp(mean NLL of each next token); KL = KL(P_fp32 ‖ P_quant) at each "
                "position, its mean and 99th percentile; Δp = p_quant − p_fp32 of the real next token "
                "(negative: the quantized model is less sure of the text); same top-1 = % of positions "
                f"with the same most likely token. Encoder: mean cosine of fp32 and quantized embeddings; "
                f"overlap@{run.TOP_K} of retrieval results for {len(queries)} queries. The *other thread "
                "count* row is the noise floor.\n\n"
                "**Two int8 schemes, two lessons.** 8-bit *weights* are practically free (see the Q8_0 row "
                "of the ladder below). The naive dynamic int8 also rounds the *activations*, with one "
                "scale for the whole input of each layer, in 7 bits; SmolLM2 puts *massive activations* "
                "(values in the thousands) on its first token in two MLP down-projections, that one token "
                "sets the scale, and every other token's values round to zero. *int8 per-token* uses the "
                "same int8 kernels with one scale per token and keeps those two layers in float32: "
                "near float32, at int8 speed (bench/quantized.py measures both; figures in "
                "bench/RESULTS.md).")
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
    quantized_ladder.build(cache, model, settings)

    # ---- register listeners ---------------------------------------------------------------
    def on_model(model_key):
        choices = scheme_choices(model_key)
        return gr.Dropdown(choices=choices, value=choices[0][1])

    def stream(model_key, key, text, n, progress=gr.Progress()):
        yield from compare_stream(cache, model_key, key, text, n, settings.job_time_limit_s, progress)

    def table_fn(model_key, text, n, progress=gr.Progress()):
        return compare_table(cache, model_key, text, n, progress)

    def details_fn(model_key, progress=gr.Progress()):
        return details(cache, model_key, progress)

    model.change(on_model, model, scheme, api_name="quant_schemes", api_visibility="private")
    queue = model_queue(settings)
    calls = (Call(stream, [model, scheme, prompt, max_new], [status, full_out, quant_out, strip], queue),
             Call(table_fn, [model, prompt, max_new], [table, cost], queue),
             Call(charts, cost, [size_plot, speed_plot, ttft_plot]),
             Call(details_fn, model, [quality, bytes_table, bytes_plot, hardware_md, kernels], queue))
    # Public API: quant_compare (the metrics table) and the ladder's endpoints; the other steps of Compare
    # stay callable by gradio_client but are not on the API page.
    hidden = {"api_visibility": "undocumented"}
    streamed = run_btn.click(**calls[0].kwargs(), api_name="quant_stream", **hidden)
    tabled = streamed.success(**calls[1].kwargs(), api_name="quant_compare")
    charted = tabled.success(**calls[2].kwargs(), api_name="quant_charts", **hidden)
    detailed = charted.success(**calls[3].kwargs(), api_name="quant_details", **hidden)
    # Stop ends the streamed comparison at its next token (its generator is not advanced again) and
    # drops the steps still to come; a step already running finishes its current scheme.
    stop_btn.click(None, None, None, cancels=[streamed, tabled, charted, detailed], api_name="quant_stop")
    return TabHandle("quantized", {"model": model, "scheme": scheme, "new_tokens": max_new, "prompt": prompt},
                     {"compare": Action(calls, "Compare", (), "quant-table")}, needs=warm_ups(cache, registry),
                     value_needs={"model": {CHAT: ("chat", "quant-chat"), ENCODER: ("encoder", "quant-encoder")}})

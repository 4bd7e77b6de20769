"""Attention visualizer tab: where each token looks, head by head, and why it matters.

What it teaches: self-attention is a table of weights per layer and head (bertviz's head
and model views, a heatmap per head); heads specialise (previous token, itself, [CLS]/first
token "sinks", [SEP]); each weight is softmax(q·k/√d + mask) with real numbers from the
model; and switching a head off shows, in numbers, whether the model needed it. The encoder
(all-MiniLM-L6-v2) sees a sentence or a pair; the decoder (SmolLM2) sees a prompt and,
optionally, the tokens it generates next, so you can see what a new token attends to.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from models.attention import capture as attn
from models.attention.head_stats import head_stats
from models.attention.knockout import knockout, parse_heads
from models.attention.render import head_grid_html, heatmap_png
from models.attention.walkthrough import walk_through
from models.registry import CHAT, ENCODER, ModelRegistry
from tabs.bertviz_views import sandboxed_iframe, views_document
from tabs.common import model_queue, user_errors

AVERAGE = "average of heads"
VIEWS_TAB, HEATMAP_TAB = "bertviz views", "Heatmap"
PNG_MAX_AGE_S = 900  # heatmap files are served (and downloaded) right after they are drawn
AUTO_LAYERS = 6  # deeper models show this many evenly spaced layers in the bertviz views
EXAMPLES = [
    ["encoder", "The cat sat on the mat because it was tired.", "", 0],
    ["encoder", "The animal didn't cross the street because it was too wide.", "Where was the animal?", 0],
    ["decoder", "The capital of France is", "", 6],
    ["decoder", "Alice gave Bob a book. Then Bob thanked", "", 4],
]


HOW_TO_READ = """
**How to read it.** Each layer has several heads; a head gives every token (a *query*) a set of
weights over all tokens (the *keys*) that sums to 1. The **head view** draws those weights as
lines (hover a token); the **model view** shows every head at once; the **heatmap** is one head
as a grid. Heads specialise: some look at the previous token, some at the token itself, many
park their attention on the first token or [SEP] (an *attention sink*) — see **What each head
does**. **How attention is computed** replays softmax(q·k/√d + mask) with the model's numbers;
**Head knock-out** switches heads off to see if the model needed them.
"""


def adapter_for(registry: ModelRegistry, kind: str):
    """The loaded model for "encoder" or "decoder", both with eager attention."""
    if kind == "decoder":
        return registry.chat_model(attn_implementation="eager")
    return registry.encoder_with_attention()


def compute(registry: ModelRegistry, kind: str, text: str, text_b: str = "", new_tokens: int = 0,
            chat_template: bool = False, max_tokens: int = attn.HEATMAP_LIMIT) -> attn.AttentionData:
    adapter = adapter_for(registry, kind)
    if kind == "decoder":
        return attn.decoder_attention(adapter, text, new_tokens=new_tokens, max_tokens=max_tokens,
                                      chat_template=chat_template)
    return attn.encoder_attention(adapter, text, text_b, max_tokens=max_tokens)


def view_layers(spec: str, n_layers: int) -> list[int]:
    """'0-3, 5' -> [0, 1, 2, 3, 5]; blank -> all layers, or evenly spaced ones for deep models."""
    spec = (spec or "").strip()
    if not spec:
        if n_layers <= AUTO_LAYERS + 2:
            return list(range(n_layers))
        step = (n_layers - 1) / (AUTO_LAYERS - 1)
        return sorted({round(i * step) for i in range(AUTO_LAYERS)})
    layers: set[int] = set()
    for part in spec.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            low, _, high = part.partition("-")
            layers.update(range(int(low), int(high or low) + 1))
        except ValueError:
            raise ValueError(f"{part!r} is not a layer or a range like 0-3.") from None
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"Layer {bad[0]} does not exist (layers 0-{n_layers - 1}).")
    return sorted(layers)


def views_html(data: attn.AttentionData, layers_spec: str = "") -> str:
    """The bertviz head + model views for `data` as a sandboxed iframe."""
    att, tokens, b_start, notice = data.for_views()
    layers = view_layers(layers_spec, data.n_layers)
    if len(layers) < data.n_layers:
        shown = f"Layers shown in the bertviz views: {', '.join(map(str, layers))} of 0-{data.n_layers - 1}."
        notice = f"{notice} {shown}".strip()
    document = views_document(att, tokens, b_start, layers=layers, notice=notice)
    n = len(tokens)
    height = min(1400, 260 + 23 * n + len(layers) * (n * 84 // data.n_heads + 10))
    return sandboxed_iframe(document, height=height)


def status_markdown(data: attn.AttentionData) -> str:
    parts = [f"**{data.model_name}** ({data.kind}): {data.n_tokens} tokens, {data.n_layers} layers × "
             f"{data.n_heads} heads."]
    if data.sentence_b_start is not None:
        parts.append(f"Sentence B starts at token {data.sentence_b_start} (segment id 1).")
    if data.generated_start is not None:
        parts.append(f"Tokens {data.generated_start}-{data.n_tokens - 1} were generated (greedy); "
                     "in the heatmap they are red, below the red line.")
    parts += [f"ℹ️ {notice}" for notice in data.notices]
    return "\n\n".join(parts)


def head_choice(value) -> int | None:
    return None if value in (None, "", AVERAGE) else int(value)


def require_data(data: attn.AttentionData | None) -> attn.AttentionData:
    if data is None:
        raise gr.Error("Click “Show attention” first.")
    return data


@user_errors
def analyze(registry: ModelRegistry, kind: str, text: str, text_b: str, new_tokens: int, chat_template: bool,
            layers_spec: str, progress=gr.Progress()):
    """(state, status, views iframe, head grid, head table, layer/head/query picker updates)."""
    if not (text or "").strip():
        raise gr.Error("Enter a sentence (encoder) or a prompt (decoder) first.")
    key = CHAT if kind == "decoder" else ENCODER
    if not registry.is_loaded(key, "eager"):
        progress(0.1, desc="Loading the model (first use only)…")
    progress(0.4, desc="Running the model…")
    try:
        data = compute(registry, kind, text, text_b, int(new_tokens or 0), bool(chat_template))
        frame = views_html(data, layers_spec)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    stats = head_stats(data.attentions, data.sep_positions)
    # The session keeps the weights for the heatmap only: half precision halves its memory
    # (SmolLM2 at 256 tokens: 30 layers x 9 heads x 256² weights = 71 MB in fp32).
    data.attentions = data.attentions.astype(np.float16)
    layers = list(range(data.n_layers))
    heads = [AVERAGE] + list(range(data.n_heads))
    queries = [(f"{i}: {label}", i) for i, label in enumerate(data.labels)]
    last = data.n_layers - 1
    return (data, status_markdown(data), frame, head_grid_html(stats), pd.DataFrame(stats.rows()),
            gr.update(choices=layers, value=last), gr.update(choices=heads, value=AVERAGE),
            gr.update(choices=layers, value=0), gr.update(choices=list(range(data.n_heads)), value=0),
            gr.update(choices=queries, value=data.n_tokens - 1))


def prune(folder: str, max_age_s: float = PNG_MAX_AGE_S) -> None:
    """Delete heatmaps older than `max_age_s`: the folder stays small on a long-running server."""
    cutoff = time.time() - max_age_s
    for old in Path(folder).glob("*.png"):
        with contextlib.suppress(OSError):  # another request may have removed it already
            if old.stat().st_mtime < cutoff:
                old.unlink()


@user_errors
def heatmap(data: attn.AttentionData | None, layer, head, folder: str):
    """(PNG for the image, the same file for the download button)."""
    data = require_data(data)
    prune(folder)
    path = Path(folder) / f"attention-L{int(layer)}-{'avg' if head_choice(head) is None else f'H{head}'}-" \
                          f"{uuid.uuid4().hex[:8]}.png"
    try:
        heatmap_png(data, int(layer), head_choice(head), path)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    return str(path), gr.update(value=str(path), interactive=True)


@user_errors
def explain(registry: ModelRegistry, data: attn.AttentionData | None, layer, head, query):
    """(explanation markdown, table rows) for the Q·K walk-through of one head and query token."""
    data = require_data(data)
    try:
        walk = walk_through(adapter_for(registry, data.kind).model, data, int(layer), int(head), int(query))
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    causal = "; the causal mask sets every later key to −∞" if data.kind == "decoder" else ""
    rope = " Q and K were first rotated by their positions (RoPE)." if walk.rotary else ""
    text = (f"Layer {walk.layer}, head {walk.head}, query token {walk.query_index} "
            f"(`{walk.query_label.strip() or repr(walk.query_label)}`).\n\n"
            f"1. **score** = q·k for every key (q, k: {walk.head_dim}-dim vectors).{rope}\n"
            f"2. **scaled** = score × 1/√{walk.head_dim} = score × {walk.scale:.4f}\n"
            f"3. **+ mask**: 0 where the query may look{causal}.\n"
            f"4. **softmax**: exp(s − max) / Σ exp(s − max).\n\n"
            f"Largest difference from the weights the model returned: **{walk.max_abs_diff:.2e}**.")
    columns = ["#", "key", "q·k", "scaled", "mask", "scaled+mask", "exp(s−max)", "softmax", "model weight"]
    return text, pd.DataFrame(walk.rows(), columns=columns)


@user_errors
def knock(registry: ModelRegistry, data: attn.AttentionData | None, spec: str):
    """(result markdown, comparison rows) after switching off the heads named in `spec`."""
    data = require_data(data)
    try:
        heads = parse_heads(spec, data.n_layers, data.n_heads)
        result = knockout(adapter_for(registry, data.kind), data, heads)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
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


def build(services, settings) -> None:
    registry = services.registry
    folder = tempfile.mkdtemp(prefix="genai-lab-attention-")  # heatmap PNGs served by this process
    enc_name, dec_name = registry.specs[ENCODER].display_name, registry.specs[CHAT].display_name
    data_state = gr.State(None, time_to_live=settings.session_ttl_s)
    gr.Markdown("Pick a model, type a sentence (or a pair), and see where every token looks. "
                "Hover tokens in the head view; then find out what each head does and whether it matters.")
    with gr.Row():
        with gr.Column(scale=2):
            kind = gr.Radio([(f"Encoder: {enc_name}", "encoder"), (f"Decoder: {dec_name}", "decoder")],
                            value="encoder", label="Model")
            text = gr.Textbox(label="Sentence (encoder) or prompt (decoder)", lines=2, max_lines=8,
                              value="The cat sat on the mat because it was tired.", elem_id="attention-text")
            text_b = gr.Textbox(label="Second sentence (encoder only, optional: segment B)", lines=1,
                                elem_id="attention-text-b")
            with gr.Row():
                new_tokens = gr.Slider(0, attn.MAX_NEW_TOKENS, value=0, step=1, visible=False,
                                       label="Decoder: tokens to generate (greedy)")
                chat_template = gr.Checkbox(label="Decoder: wrap in the chat template", value=False, visible=False)
            layers_spec = gr.Textbox(label="Layers in the bertviz views", placeholder="blank = auto, or e.g. 0-5",
                                     info=f"Views show up to {attn.VIEW_LIMIT} tokens; the heatmap up to "
                                          f"{attn.HEATMAP_LIMIT}.")
            show = gr.Button("Show attention", variant="primary", elem_id="attention-show")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="attention-status")
            gr.Markdown(HOW_TO_READ)
    gr.Examples(EXAMPLES, inputs=[kind, text, text_b, new_tokens], label="Examples")
    active_tab = gr.State(VIEWS_TAB)  # the heatmap is drawn only while its tab is open
    with gr.Tabs() as sub_tabs:
        with gr.Tab(VIEWS_TAB, render_children=True):  # stay mounted: no re-render on switching back
            views = gr.HTML(elem_id="attention-views")
        with gr.Tab(HEATMAP_TAB):
            with gr.Row():
                hm_layer = gr.Dropdown([0], value=0, label="Layer")
                hm_head = gr.Dropdown([AVERAGE], value=AVERAGE, label="Head")
                download = gr.DownloadButton("Download PNG", interactive=False)
            hm_image = gr.Image(label="Attention heatmap (rows: query token, columns: key token)", type="filepath",
                                format="png", interactive=False, elem_id="attention-heatmap")
        with gr.Tab("What each head does"):
            grid = gr.HTML(elem_id="attention-head-grid")
            table = gr.Dataframe(headers=["layer", "head", "type", "entropy", "previous", "self", "first", "sep"],
                                 label="Per-head scores (mean over query tokens)", interactive=False)
        with gr.Tab("How attention is computed"):
            with gr.Row():
                wt_layer = gr.Dropdown([0], value=0, label="Layer")
                wt_head = gr.Dropdown([0], value=0, label="Head")
                wt_query = gr.Dropdown([], label="Query token")
                wt_button = gr.Button("Walk through")
            wt_text = gr.Markdown()
            wt_table = gr.Dataframe(headers=["#", "key", "q·k", "scaled", "mask", "scaled+mask", "exp(s−max)",
                                             "softmax", "model weight"], interactive=False)
        with gr.Tab("Head knock-out"):
            with gr.Row():
                ko_heads = gr.Textbox(label="Heads to switch off", value="0.0",
                                      info="layer.head, comma separated; layer.all for a whole layer (e.g. 2.3, 4.all)")
                ko_button = gr.Button("Switch off and compare")
            ko_text = gr.Markdown()
            ko_table = gr.Dataframe(interactive=False)

    # ---- register listeners ----
    def on_show(kind, text, text_b, new_tokens, chat_template, layers_spec, progress=gr.Progress()):
        return analyze(registry, kind, text, text_b, new_tokens, chat_template, layers_spec, progress)

    def on_heatmap(data, layer, head):
        return heatmap(data, layer, head, folder)

    def on_walk(data, layer, head, query):
        return explain(registry, data, layer, head, query)

    def on_knock(data, spec):
        return knock(registry, data, spec)

    def attention_data(text: str, text_b: str = "", model: str = "encoder", new_tokens: int = 0,
                       max_tokens: int = attn.VIEW_LIMIT) -> dict:
        """Attention of a text: {kind, model, layers, heads, tokens, attention[layer][head][query][key], ...}.

        model: "encoder" or "decoder"; new_tokens: tokens the decoder generates first;
        max_tokens: input limit (at most 256; the answer grows with layers x heads x tokens²).
        """
        if model not in ("encoder", "decoder"):
            raise gr.Error('model must be "encoder" or "decoder".')
        try:
            return compute(registry, model, text, text_b, int(new_tokens or 0),
                           max_tokens=max(2, min(int(max_tokens), attn.HEATMAP_LIMIT))).to_dict()
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    def on_kind(kind):
        encoder = kind == "encoder"
        return gr.update(visible=encoder), gr.update(visible=not encoder), gr.update(visible=not encoder)

    kind.change(on_kind, kind, [text_b, new_tokens, chat_template], api_name="attention_model_kind", queue=False)
    pickers = [hm_layer, hm_head, wt_layer, wt_head, wt_query]
    shown = show.click(on_show, [kind, text, text_b, new_tokens, chat_template, layers_spec],
                       [data_state, status, views, grid, table, *pickers], api_name="attention_views",
                       **model_queue(settings))
    def on_heatmap_if_open(data, layer, head, active):
        if active != HEATMAP_TAB:  # drawn when the tab is opened: no CPU taken from the views now
            return None, gr.update(value=None, interactive=False)
        return heatmap(data, layer, head, folder)

    def on_tab(data, layer, head, image, evt: gr.SelectData):
        if evt.value == HEATMAP_TAB and data is not None and not image:  # not drawn yet for this input
            return evt.value, *heatmap(data, layer, head, folder)
        return evt.value, gr.skip(), gr.skip()

    shown.success(on_heatmap_if_open, [data_state, hm_layer, hm_head, active_tab], [hm_image, download],
                  api_name="attention_heatmap_after")
    sub_tabs.select(on_tab, [data_state, hm_layer, hm_head, hm_image], [active_tab, hm_image, download],
                    api_name="attention_tab")
    gr.on([hm_layer.input, hm_head.input], on_heatmap, [data_state, hm_layer, hm_head], [hm_image, download],
          api_name="attention_heatmap")
    wt_button.click(on_walk, [data_state, wt_layer, wt_head, wt_query], [wt_text, wt_table],
                    api_name="attention_walkthrough", **model_queue(settings))
    ko_button.click(on_knock, [data_state, ko_heads], [ko_text, ko_table], api_name="attention_knockout",
                    **model_queue(settings))
    gr.api(user_errors(attention_data), api_name="attention", **model_queue(settings))

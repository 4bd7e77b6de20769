"""Attention visualizer tab: where each token looks, head by head, and why it matters.

What it teaches: self-attention is a table of weights per layer and head (bertviz's head
and model views, a heatmap per head); heads specialise (previous token, itself, [CLS]/first
token "sinks", [SEP]); each weight is softmax(q·k/√d + mask) with real numbers from the
model; and switching a head off shows, in numbers, whether the model needed it. The encoder
(all-MiniLM-L6-v2) sees a sentence or a pair; the decoder (SmolLM2) sees a prompt and,
optionally, the tokens it generates next, so you can see what a new token attends to.

Here: the components and their listeners. The models run in models/attention/; what is shown
(HTML, the heatmap PNG, Markdown and tables) is drawn by tabs/attention_views.py.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from models.attention import capture as attn
from models.attention.head_stats import HeadStats, head_stats
from models.attention.knockout import KnockoutResult, knockout, parse_heads
from models.attention.walkthrough import WalkThrough, walk_through
from models.registry import CHAT, ENCODER, ModelRegistry
from tabs.attention_views import (
    HEAD_COLUMNS,
    WALK_COLUMNS,
    head_grid_html,
    head_table,
    heatmap_png,
    knockout_view,
    query_choices,
    status_markdown,
    views_html,
    walkthrough_view,
)
from tabs.common import model_queue, user_errors
from tabs.handles import Action, Call, TabHandle

AVERAGE = "average of heads"
VIEWS_TAB, HEATMAP_TAB = "bertviz views", "Heatmap"
STATE_TTL_S = 900
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
            low, high = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"{part!r} is not a layer or a range like 0-3.") from None
        # Bounds before expanding: "0-20000000" must not build a 20-million-element set.
        for layer in (low, high):
            if not 0 <= layer < n_layers:
                raise ValueError(f"Layer {layer} does not exist (layers 0-{n_layers - 1}).")
        layers.update(range(low, high + 1))
    return sorted(layers)


def head_choice(value) -> int | None:
    return None if value in (None, "", AVERAGE) else int(value)


def require_data(data: attn.AttentionData | None) -> attn.AttentionData:
    if data is None:
        raise gr.Error("Click “Show attention” first.")
    return data


@dataclass
class Analysis:
    """One "Show attention" run: the data the session keeps, its head scores, the views iframe."""

    data: attn.AttentionData
    stats: HeadStats
    views: str


def analyze(registry: ModelRegistry, kind: str, text: str, text_b: str, new_tokens: int, chat_template: bool,
            layers_spec: str, progress=gr.Progress()) -> Analysis:
    """Run the model on the input and draw the bertviz views; bad input raises gr.Error."""
    if not (text or "").strip():
        raise gr.Error("Enter a sentence (encoder) or a prompt (decoder) first.")
    key = CHAT if kind == "decoder" else ENCODER
    if not registry.is_loaded(key, "eager"):
        progress(0.1, desc="Loading the model (first use only)…")
    progress(0.4, desc="Running the model…")
    try:
        data = compute(registry, kind, text, text_b, int(new_tokens or 0), bool(chat_template))
        frame = views_html(data, view_layers(layers_spec, data.n_layers))
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    stats = head_stats(data.attentions, data.sep_positions)
    # The session keeps the weights for the heatmap only, as uint8: a quarter of float32 (SmolLM2 at
    # 256 tokens: 30 layers x 9 heads x 256² weights = 17.7 MB instead of 71 MB; app.STATE_MB_PER_SESSION).
    return Analysis(data.compact(), stats, frame)


def prune(folder: str, max_age_s: float = PNG_MAX_AGE_S) -> None:
    """Delete heatmaps older than `max_age_s`: the folder stays small on a long-running server."""
    cutoff = time.time() - max_age_s
    for old in Path(folder).glob("*.png"):
        with contextlib.suppress(OSError):  # another request may have removed it already
            if old.stat().st_mtime < cutoff:
                old.unlink()


def heatmap(data: attn.AttentionData | None, layer, head, folder: str) -> str:
    """Draw one head (or the layer's average) into a new PNG under `folder`; its path."""
    data = require_data(data)
    prune(folder)
    path = Path(folder) / f"attention-L{int(layer)}-{'avg' if head_choice(head) is None else f'H{head}'}-" \
                          f"{uuid.uuid4().hex[:8]}.png"
    try:
        heatmap_png(data, int(layer), head_choice(head), path)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    return str(path)


def explain(registry: ModelRegistry, data: attn.AttentionData | None, layer, head, query) -> WalkThrough:
    """The Q·K walk-through of one head and query token, recomputed with the model's weights."""
    data = require_data(data)
    try:
        return walk_through(adapter_for(registry, data.kind).model, data, int(layer), int(head), int(query))
    except ValueError as exc:
        raise gr.Error(str(exc)) from None


def knock(registry: ModelRegistry, data: attn.AttentionData | None, spec: str) -> KnockoutResult:
    """What changes when the heads named in `spec` are switched off."""
    data = require_data(data)
    try:
        heads = parse_heads(spec, data.n_layers, data.n_heads)
        return knockout(adapter_for(registry, data.kind), data, heads)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None


def build(services, settings) -> TabHandle:
    registry = services.registry
    folder = tempfile.mkdtemp(prefix="genai-lab-attention-")  # heatmap PNGs served by this process
    enc_name, dec_name = registry.specs[ENCODER].display_name, registry.specs[CHAT].display_name
    # Heavy: dropped after STATE_TTL_S without a new run (a session that moved on frees it).
    data_state = gr.State(None, time_to_live=min(settings.session_ttl_s, STATE_TTL_S))
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
        # render_children: the views stay mounted, no re-render on switching back
        with gr.Tab(VIEWS_TAB, id="attention-views-tab", render_children=True):
            views = gr.HTML(elem_id="attention-views")
        with gr.Tab(HEATMAP_TAB, id="attention-heatmap-tab"):
            with gr.Row():
                hm_layer = gr.Dropdown([0], value=0, label="Layer")
                hm_head = gr.Dropdown([AVERAGE], value=AVERAGE, label="Head")
                download = gr.DownloadButton("Download PNG", interactive=False)
            hm_image = gr.Image(label="Attention heatmap (rows: query token, columns: key token)", type="filepath",
                                format="png", interactive=False, elem_id="attention-heatmap")
        with gr.Tab("What each head does", id="attention-heads-tab"):
            grid = gr.HTML(elem_id="attention-head-grid")
            table = gr.Dataframe(headers=HEAD_COLUMNS,
                                 label="Per-head scores (mean over query tokens)", interactive=False)
        with gr.Tab("How attention is computed", id="attention-walk-tab"):
            with gr.Row():
                wt_layer = gr.Dropdown([0], value=0, label="Layer")
                wt_head = gr.Dropdown([0], value=0, label="Head")
                wt_query = gr.Dropdown([], label="Query token")
                wt_button = gr.Button("Walk through")
            wt_text = gr.Markdown(elem_id="attention-walk")
            wt_table = gr.Dataframe(headers=WALK_COLUMNS, interactive=False)
        with gr.Tab("Head knock-out", id="attention-knockout-tab"):
            with gr.Row():
                ko_heads = gr.Textbox(label="Heads to switch off", value="0.0",
                                      info="layer.head, comma separated; layer.all for a whole layer (e.g. 2.3, 4.all)")
                ko_button = gr.Button("Switch off and compare")
            ko_text = gr.Markdown(elem_id="attention-knockout")
            ko_table = gr.Dataframe(interactive=False)

    # ---- register listeners ----
    # Handlers take their inputs by name (inputs_kwargs) and return {component: value}: an output
    # left out of the dict keeps its value, and reordering a list below cannot change what goes where.
    def drawn(path: str | None) -> dict:
        """The heatmap image and its download button, showing `path` (None: cleared)."""
        return {hm_image: path, download: gr.update(value=path, interactive=path is not None)}

    @user_errors
    def on_show(kind, text, text_b, new_tokens, chat_template, layers_spec, progress=gr.Progress()):
        run = analyze(registry, kind, text, text_b, new_tokens, chat_template, layers_spec, progress)
        data, layers, heads = run.data, list(range(run.data.n_layers)), list(range(run.data.n_heads))
        return {data_state: data, status: status_markdown(data), views: run.views,
                grid: head_grid_html(run.stats), table: head_table(run.stats),
                hm_layer: gr.update(choices=layers, value=layers[-1]),
                hm_head: gr.update(choices=[AVERAGE, *heads], value=AVERAGE),
                wt_layer: gr.update(choices=layers, value=0), wt_head: gr.update(choices=heads, value=0),
                wt_query: gr.update(choices=query_choices(data), value=data.n_tokens - 1)}

    @user_errors
    def on_heatmap(data, layer, head):
        return drawn(heatmap(data, layer, head, folder))

    @user_errors
    def on_heatmap_if_open(data, layer, head, active):
        if active != HEATMAP_TAB:  # drawn when the tab is opened: no CPU taken from the views now
            return drawn(None)
        return on_heatmap(data, layer, head)

    @user_errors
    def on_tab(data, layer, head, image, evt: gr.SelectData):
        if evt.value == HEATMAP_TAB and data is not None and not image:  # not drawn yet for this input
            return {active_tab: evt.value, **on_heatmap(data, layer, head)}
        return {active_tab: evt.value}

    @user_errors
    def on_walk(data, layer, head, query):
        walk = explain(registry, data, layer, head, query)
        markdown, rows = walkthrough_view(walk, data.kind)
        return {wt_text: markdown, wt_table: rows}

    @user_errors
    def on_knock(data, spec):
        markdown, rows = knockout_view(knock(registry, data, spec))
        return {ko_text: markdown, ko_table: rows}

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
        return {text_b: gr.update(visible=encoder), new_tokens: gr.update(visible=not encoder),
                chat_template: gr.update(visible=not encoder)}

    heatmap_inputs = {"data": data_state, "layer": hm_layer, "head": hm_head}
    queue = model_queue(settings)
    show_call = Call(on_show, None, [data_state, status, views, grid, table, hm_layer, hm_head, wt_layer, wt_head,
                                     wt_query], queue,
                     {"kind": kind, "text": text, "text_b": text_b, "new_tokens": new_tokens,
                      "chat_template": chat_template, "layers_spec": layers_spec})
    after_show = Call(on_heatmap_if_open, None, [hm_image, download], {}, {**heatmap_inputs, "active": active_tab})
    heatmap_call = Call(on_heatmap, None, [hm_image, download], {}, heatmap_inputs)
    walk_call = Call(on_walk, None, [wt_text, wt_table], queue,
                     {"data": data_state, "layer": wt_layer, "head": wt_head, "query": wt_query})
    knock_call = Call(on_knock, None, [ko_text, ko_table], queue, {"data": data_state, "spec": ko_heads})
    kind.change(on_kind, inputs_kwargs={"kind": kind}, outputs=[text_b, new_tokens, chat_template],
                api_name="attention_model_kind", api_visibility="private", queue=False)
    # Public API: `attention` only (the README's API section); the tab's handlers stay callable by
    # gradio_client (undocumented), its plumbing (model switch, sub-tab, chained redraw) is private.
    hidden = {"api_visibility": "undocumented"}
    shown = show.click(**show_call.kwargs(), api_name="attention_views", **hidden)
    shown.success(**after_show.kwargs(), api_name="attention_heatmap_after", api_visibility="private")
    sub_tabs.select(on_tab, inputs_kwargs={**heatmap_inputs, "image": hm_image},
                    outputs=[active_tab, hm_image, download], api_name="attention_tab", api_visibility="private")
    gr.on([hm_layer.input, hm_head.input], **heatmap_call.kwargs(), api_name="attention_heatmap", **hidden)
    wt_button.click(**walk_call.kwargs(), api_name="attention_walkthrough", **hidden)
    ko_button.click(**knock_call.kwargs(), api_name="attention_knockout", **hidden)
    gr.api(user_errors(attention_data), api_name="attention", **model_queue(settings))
    actions = {"show": Action((show_call, after_show), "Show attention", (), "attention-views"),
               "heatmap": Action((heatmap_call,), "Draw the heatmap", (), "attention-heatmap"),
               "walkthrough": Action((walk_call,), "Walk through", (), "attention-walk"),
               "knockout": Action((knock_call,), "Switch off and compare", (), "attention-knockout")}
    # The heatmap and walk-through pickers are left out: their choices come from the last run.
    components = {"model": kind, "text": text, "text_b": text_b, "new_tokens": new_tokens,
                  "chat_template": chat_template, "layers": layers_spec, "heads_off": ko_heads}
    sections = {"views": "attention-views-tab", "heatmap": "attention-heatmap-tab", "heads": "attention-heads-tab",
                "walkthrough": "attention-walk-tab", "knockout": "attention-knockout-tab"}
    # Which model a step's `model:` value loads (with attention weights).
    value_needs = {"model": {"encoder": ("encoder-eager",), "decoder": ("chat-eager",)}}
    return TabHandle("attention", components, actions, sub_tabs, sections, value_needs=value_needs)

"""From text to numbers: tokenizers, embeddings and what each layer predicts (the first lesson).

What it teaches: a transformer reads ids, not letters. The same text is cut differently by
SmolLM2's byte-level BPE and MiniLM's WordPiece (and costs a different number of tokens); each
id becomes a learned vector, and sentence vectors that mean alike point alike; position enters
as a rotation (RoPE) or a learned vector; and reading the residual stream after every layer
through the output head (the logit lens) shows the next-token prediction forming layer by layer.

Handlers are plain functions of (registry, inputs); `build` makes the components, then wires
the listeners. The three scriptable endpoints are `tokenize`, `embedding_map` and `logit_lens`.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pandas as pd

from models.registry import ENCODER
from models.tokens import merges, positions, sentence_map, token_vectors
from models.tokens.logit_lens import MAX_PROMPT_TOKENS, MAX_TOP_K, logit_lens
from models.tokens.tokenization import tokenize
from tabs import tokens_views as views
from tabs.common import model_queue, user_errors
from tabs.handles import Action, Call, TabHandle

EXAMPLES = Path(__file__).parent.parent / "assets" / "examples" / "tokens.json"
DECODING_TAB = "Decoding playground"
MAX_LAYER = 30  # SmolLM2-135M's layers: the rotary layer slider's range
# Switch to the decoding tab (by its visible name) and put the lens prompt on the clipboard.
OPEN_DECODING_JS = f"""(prompt) => {{
  if (navigator.clipboard) navigator.clipboard.writeText(prompt || "").catch(() => {{}});
  const tab = [...document.querySelectorAll('button[role="tab"]')].find(b => b.textContent.trim() === "{DECODING_TAB}");
  if (tab) tab.click();
  return [];
}}"""


def clamp(value, low: int, high: int, default: int) -> int:
    """An API number inside the UI's range (None and junk become the default)."""
    try:
        return max(low, min(int(value), high))
    except (TypeError, ValueError):
        return default


# ---- tokenizers ---------------------------------------------------------------------------
def both_tokenizations(registry, text: str, as_chat: bool):
    lm, encoder = registry.chat_model(), registry.sentence_encoder()
    encoder_name = registry.specs[ENCODER].display_name
    return [tokenize(lm.tokenizer, lm.name, text, bool(as_chat)),
            tokenize(encoder.tokenizer, encoder_name, text, bool(as_chat))]


def _explanations(registry, word: str) -> tuple[str, str]:
    lm, encoder = registry.chat_model(), registry.sentence_encoder()
    return (views.merge_path_html(merges.bpe_merge_path(lm.tokenizer, word)),
            views.lookups_html(merges.wordpiece_lookups(encoder.tokenizer, word)))


@user_errors
def show_tokens(registry, text: str, as_chat: bool):
    """Both tokenizers' pieces and counts, and the merge path / lookups of the text's longest word."""
    results = both_tokenizations(registry, text, as_chat)
    words = views.word_choices(text)
    word = max(words, key=len) if words else None
    explained = _explanations(registry, word) if word else ("", "")
    return (views.pieces_html(results[0]), views.pieces_html(results[1]), views.counts_table(results),
            gr.update(choices=words, value=word), *explained)


@user_errors
def explain_word(registry, word: str):
    return _explanations(registry, word)


# ---- embeddings and positions -------------------------------------------------------------
@user_errors
def show_map(registry, block: str, dims: str):
    texts, groups = sentence_map.texts_and_groups(block)
    smap = sentence_map.sentence_map(registry.sentence_encoder(), texts, groups, 3 if dims == "3-D" else 2)
    heatmap = views.similarity_figure(smap.similarity, smap.texts, "Cosine similarity of every pair (exact)")
    return views.map_figure(smap), heatmap, "\n\n".join(f"ℹ️ {views.escape(n)}" for n in smap.notes)


@user_errors
def show_neighbours(registry, word: str, k: float):
    return views.neighbours_table(token_vectors.nearest_tokens(registry.chat_model(), word, clamp(k, 1, 50, 10)))


@user_errors
def show_analogy(registry, a: str, b: str, c: str, expected: str):
    result = token_vectors.analogy(registry.chat_model(), a, b, c, expected)
    return views.analogy_table(result), views.analogy_note(result)


@user_errors
def classic_analogies(registry, analogies: list[list[str]]):
    lm = registry.chat_model()
    rows = [views.analogy_row(token_vectors.analogy(lm, *quad)) for quad in analogies]
    return pd.DataFrame(rows, columns=views.ANALOGY_COLUMNS)


@user_errors
def show_rotary(registry, query: str, key: str, layer: float, max_distance: float):
    curve = positions.rotary_scores(registry.chat_model(), query, key, clamp(layer, 1, MAX_LAYER, 1),
                                    clamp(max_distance, 8, positions.MAX_DISTANCE, 256))
    return views.rotary_figure(curve)


@user_errors
def show_learned_positions(registry, n_positions: float):
    n = clamp(n_positions, 8, positions.MAX_POSITIONS, 128)
    return views.positions_figure(positions.learned_position_similarity(registry.sentence_encoder(), n))


# ---- logit lens ---------------------------------------------------------------------------
@user_errors
def run_lens(registry, prompt: str, as_chat: bool, top_k: float):
    lens = logit_lens(registry.chat_model(), prompt, bool(as_chat), clamp(top_k, 1, MAX_TOP_K, 5))
    last, final = len(lens.tokens) - 1, len(lens.layers) - 1
    notes = "\n\n".join(f"ℹ️ {views.escape(n)}" for n in lens.notes)
    return (lens, views.lens_grid(lens), gr.update(choices=views.layer_choices(lens), value=final),
            gr.update(choices=views.position_choices(lens), value=last), views.cell_summary(lens, final, last),
            views.cell_table(lens, final, last), views.chosen_figure(lens, last), notes)


@user_errors
def show_cell(lens, layer, position):
    if lens is None or layer is None or position is None:
        return gr.skip(), gr.skip(), gr.skip()
    layer = clamp(layer, 0, len(lens.layers) - 1, 0)
    position = clamp(position, 0, len(lens.tokens) - 1, 0)
    return (views.cell_summary(lens, layer, position), views.cell_table(lens, layer, position),
            views.chosen_figure(lens, position))


@user_errors
def select_cell(lens, evt: gr.SelectData):
    """A click on the grid: row = layer (last first), column = position (after the label column)."""
    row, column = evt.index if isinstance(evt.index, (list, tuple)) else (None, None)
    if lens is None or row is None or int(row) < 0 or not column or int(column) < 1:  # a header or the label column
        return (gr.skip(),) * 5
    layer, position = views.lens_row_layer(lens, int(row)), int(column) - 1
    return (layer, position, *show_cell(lens, layer, position))


def build(services, settings) -> TabHandle:
    registry = services.registry
    examples = json.loads(EXAMPLES.read_text(encoding="utf-8"))
    queue = model_queue(settings)
    gr.Markdown("A model never reads letters: text is cut into **tokens**, each token id becomes a **vector**, "
                "and layer after layer those vectors turn into a **prediction** of the next token. "
                "Start with the tokenizers, end with what each layer predicts.")
    with gr.Tabs() as sections:
        with gr.Tab("Tokenizers", id="tokens-tokenizers"):
            with gr.Row():
                with gr.Column(scale=3):
                    text = gr.Textbox(value=examples["tokenize"][-1][1], label="Text", lines=4, max_length=10_000,
                                      elem_id="tokens-text")
                with gr.Column(scale=1, min_width=220):
                    as_chat = gr.Checkbox(label="as a chat message (SmolLM2's chat template)", value=False)
                    cut = gr.Button("Tokenize", variant="primary", elem_id="tokens-cut")
            chat_pieces = gr.HTML(elem_id="tokens-chat-pieces", render=False)
            encoder_pieces = gr.HTML(elem_id="tokens-encoder-pieces", render=False)
            counts = gr.Dataframe(label="What the same text costs in each tokenizer", interactive=False,
                                  elem_id="tokens-counts", render=False)
            word = gr.Dropdown(choices=[], allow_custom_value=True, label="Word", scale=3, render=False)
            merge_path = gr.HTML(elem_id="tokens-merges", render=False)
            lookups = gr.HTML(elem_id="tokens-lookups", render=False)
            tokens_out = [chat_pieces, encoder_pieces, counts, word, merge_path, lookups]
            gr.Examples([[t, False] for _, t in examples["tokenize"]], inputs=[text, as_chat], outputs=tokens_out,
                        fn=lambda t, chat: show_tokens(registry, t, chat), run_on_click=True, cache_examples=False,
                        example_labels=[name for name, _ in examples["tokenize"]], api_name="tokens_example",
                        label="One-click examples: where tokenizers differ most")
            gr.HTML(views.legend_html())
            with gr.Row():
                chat_pieces.render()
                encoder_pieces.render()
            counts.render()
            gr.Markdown("**Why is a word one token or several?** Pick a word of the text (or type one).")
            with gr.Row():
                word.render()
                explain = gr.Button("Explain this word", scale=1)
            with gr.Row():
                with gr.Column():
                    gr.Markdown("SmolLM2 (byte-level BPE): the merge path, from bytes, lowest rank first")
                    merge_path.render()
                with gr.Column():
                    gr.Markdown("MiniLM (WordPiece): greedy longest match, every vocabulary lookup")
                    lookups.render()

        with gr.Tab("Sentence embeddings", id="tokens-sentences"):
            gr.Markdown("MiniLM turns each text into a 384-number vector, the same encoder the document chat "
                        "searches with. One text per line; a line `# name` starts a group (up to "
                        f"{sentence_map.MAX_TEXTS} texts).")
            with gr.Row():
                with gr.Column(scale=2):
                    block = gr.Textbox(value=examples["embedding_sets"][0][1], lines=14, label="Texts",
                                       max_length=20_000, elem_id="tokens-map-texts")
                    dims = gr.Radio(["2-D", "3-D"], value="2-D", label="Map")
                    draw = gr.Button("Embed and draw", variant="primary", elem_id="tokens-map-draw")
                    gr.Examples([[t] for _, t in examples["embedding_sets"]], inputs=[block], label="Example sets",
                                example_labels=[name for name, _ in examples["embedding_sets"]],
                                api_name="tokens_map_example")
                with gr.Column(scale=3):
                    map_notes = gr.Markdown(elem_id="tokens-map-notes")
                    map_plot = gr.Plot(label="Map (PCA of the sentence vectors)", format="png", show_label=False,
                                       elem_id="tokens-map")
            heatmap = gr.Plot(label="Cosine similarity matrix", format="png", show_label=False)

        with gr.Tab("Token embeddings", id="tokens-vectors"):
            gr.Markdown("SmolLM2 looks each token id up in a 49,152 × 576 matrix (tied to its output head). "
                        "Which tokens got vectors pointing the same way?")
            with gr.Row():
                near_word = gr.Textbox(value="king", label="Token (a word that is one token)", scale=2)
                near_k = gr.Slider(1, 50, value=10, step=1, label="Neighbours", scale=2)
                near_btn = gr.Button("Nearest tokens", scale=1)
            neighbours = gr.Dataframe(label="Nearest tokens by cosine (the token itself left out)", interactive=False,
                                      elem_id="tokens-neighbours")
            gr.Examples([[w] for w in examples["neighbour_words"]], inputs=[near_word], label="Tokens to try",
                        api_name="tokens_neighbour_example")
            gr.Markdown("**Vector arithmetic**: a − b + c, ranked against the whole vocabulary.")
            with gr.Row():
                a, b, c, expected = (gr.Textbox(value=v, label=lbl) for v, lbl in
                                     zip(examples["analogies"][0], ["a", "− b", "+ c", "expected (optional)"],
                                         strict=True))
            with gr.Row():
                analogy_btn = gr.Button("Compute a − b + c", variant="primary")
                classics_btn = gr.Button("How well do the classic analogies work here?")
            analogy_note = gr.Markdown(elem_id="tokens-analogy-note")
            analogy_top = gr.Dataframe(label="Nearest tokens to a − b + c", interactive=False, elem_id="tokens-analogy")
            classics = gr.Dataframe(label="Classic analogies on SmolLM2's input embeddings (computed now)",
                                    interactive=False)
            gr.Examples(examples["analogies"], inputs=[a, b, c, expected], label="Analogies",
                        api_name="tokens_analogy_example")

        with gr.Tab("Positions", id="tokens-positions"):
            gr.Markdown("**SmolLM2: rotary position embeddings.** The layer's own q/k projections of two tokens, "
                        "rotated by the model's own rotary module: only their distance changes the score. The "
                        "vectors are the tokens' input embeddings, exactly what layer 1 sees; deeper layers see "
                        "vectors already mixed with context, so there the curve shows their rotation on bare tokens.")
            with gr.Row():
                query = gr.Textbox(value=examples["rotary_pairs"][0][0], label="Query token")
                key = gr.Textbox(value=examples["rotary_pairs"][0][1], label="Key token")
                layer = gr.Slider(1, MAX_LAYER, value=1, step=1, label="Layer")
                distance = gr.Slider(8, positions.MAX_DISTANCE, value=256, step=8, label="Up to distance")
            rotary_btn = gr.Button("Draw the score against distance", variant="primary")
            rotary_plot = gr.Plot(label="q·k/√d against distance", format="png", show_label=False,
                                  elem_id="tokens-rotary")
            gr.Examples(examples["rotary_pairs"], inputs=[query, key], label="Token pairs",
                        api_name="tokens_rotary_example")
            gr.Markdown("**MiniLM: learned position embeddings.** One trained vector per position, added to each "
                        "token's embedding.")
            with gr.Row():
                n_positions = gr.Slider(8, positions.MAX_POSITIONS, value=128, step=8, label="Positions")
                learned_btn = gr.Button("Draw their similarity")
            learned_plot = gr.Plot(label="Cosine similarity of the position vectors", format="png", show_label=False,
                                   elem_id="tokens-learned")

        with gr.Tab("What each layer predicts", id="tokens-lens"):
            gr.Markdown("The **logit lens**: after every layer, read the residual stream through SmolLM2's final "
                        "norm and output head, as if that layer were the last. Rows: layers (the model's own output "
                        "on top). Columns: positions. Each cell: the most likely next token, shaded by its "
                        "probability, **bold and underlined** where it already is the model's final choice. "
                        "The bottom row reads the embeddings themselves: SmolLM2's output head is its embedding "
                        "matrix, so it mostly answers with the input token. "
                        f"Click a cell for its top-k. Prompts are cut to {MAX_PROMPT_TOKENS} tokens.")
            with gr.Row():
                lens_prompt = gr.Textbox(value=examples["lens_prompts"][0], label="Prompt", lines=2, scale=3,
                                         max_length=4_000, elem_id="tokens-lens-prompt")
                with gr.Column(scale=1, min_width=220):
                    lens_chat = gr.Checkbox(label="as a chat message", value=False)
                    top_k = gr.Slider(1, MAX_TOP_K, value=5, step=1, label="Top-k per cell")
                    lens_btn = gr.Button("Read every layer", variant="primary", elem_id="tokens-lens-run")
            gr.Examples([[p] for p in examples["lens_prompts"]], inputs=[lens_prompt], label="Prompts",
                        api_name="tokens_lens_example")
            lens_notes = gr.Markdown()
            grid = gr.Dataframe(label="Top-1 next token after each layer (rows) at each position (columns)",
                                interactive=False, max_height=560, pinned_columns=1, elem_id="tokens-lens-grid")
            with gr.Row():
                layer_pick = gr.Dropdown(choices=[], label="Layer", interactive=True)
                position_pick = gr.Dropdown(choices=[], label="Position", interactive=True)
            cell_note = gr.Markdown(elem_id="tokens-lens-cell")
            with gr.Row():
                cell = gr.Dataframe(label="Top-k of the cell", interactive=False)
                chosen_plot = gr.Plot(label="The final choice, layer by layer", format="png", show_label=False)
            with gr.Row():
                to_decoding = gr.Button(f"Open the {DECODING_TAB} (prompt copied)", size="sm")
                gr.Markdown(f"The last column is the next token. In the **{DECODING_TAB}**, paste the prompt, "
                            "set *Wrap in the chat template* like *as a chat message* here, and choose greedy: "
                            "its first token is the top row's last cell here.")
    lens_state = gr.State(None)

    # ---- register listeners ------------------------------------------------------------
    calls = {
        "tokenize": Call(lambda t, chat: show_tokens(registry, t, chat), [text, as_chat], tokens_out),
        "explain": Call(lambda w: explain_word(registry, w), word, [merge_path, lookups]),
        "embed": Call(lambda t, d: show_map(registry, t, d), [block, dims], [map_plot, heatmap, map_notes], queue),
        "neighbours": Call(lambda w, k: show_neighbours(registry, w, k), [near_word, near_k], neighbours, queue),
        "analogy": Call(lambda *v: show_analogy(registry, *v), [a, b, c, expected], [analogy_top, analogy_note],
                        queue),
        "classics": Call(lambda: classic_analogies(registry, examples["analogies"]), None, classics, queue),
        "rotary": Call(lambda *v: show_rotary(registry, *v), [query, key, layer, distance], rotary_plot, queue),
        "learned_positions": Call(lambda n: show_learned_positions(registry, n), n_positions, learned_plot, queue),
    }
    # Public API: tokenize, embedding_map and logit_lens below (the README's API section); the tab's own
    # handlers stay callable by gradio_client but are not on the API page, the grid click is private.
    hidden = {"api_visibility": "undocumented"}
    gr.on([cut.click, as_chat.input], **calls["tokenize"].kwargs(), api_name="tokens_tokenize", **hidden)
    explain.click(**calls["explain"].kwargs(), api_name="tokens_explain_word", **hidden)
    gr.on([draw.click, dims.input], **calls["embed"].kwargs(), api_name="tokens_map", **hidden)
    near_btn.click(**calls["neighbours"].kwargs(), api_name="tokens_neighbours", **hidden)
    analogy_btn.click(**calls["analogy"].kwargs(), api_name="tokens_analogy", **hidden)
    classics_btn.click(**calls["classics"].kwargs(), api_name="tokens_classic_analogies", **hidden)
    rotary_btn.click(**calls["rotary"].kwargs(), api_name="tokens_rotary", **hidden)
    learned_btn.click(**calls["learned_positions"].kwargs(), api_name="tokens_learned_positions", **hidden)
    lens_outputs = [lens_state, grid, layer_pick, position_pick, cell_note, cell, chosen_plot, lens_notes]
    calls["lens"] = Call(lambda *v: run_lens(registry, *v), [lens_prompt, lens_chat, top_k], lens_outputs, queue)
    lens_btn.click(**calls["lens"].kwargs(), api_name="tokens_lens", **hidden)
    gr.on([layer_pick.input, position_pick.input], show_cell, [lens_state, layer_pick, position_pick],
          [cell_note, cell, chosen_plot], api_name="tokens_lens_cell", **hidden)
    grid.select(select_cell, lens_state, [layer_pick, position_pick, cell_note, cell, chosen_plot],
                api_name="tokens_lens_select", api_visibility="private")
    to_decoding.click(None, lens_prompt, None, js=OPEN_DECODING_JS)  # browser-only: no server function

    # ---- scriptable endpoints --------------------------------------------------------------
    def tokenize_text(text: str, as_chat: bool = False) -> dict:
        """How SmolLM2's byte-level BPE ("chat_model") and MiniLM's WordPiece ("encoder") cut the text:
        pieces, ids, kinds (text, special, template, unknown) and counts."""
        results = both_tokenizations(registry, text, as_chat)
        return {"chat_model": results[0].as_dict(), "encoder": results[1].as_dict()}

    def embedding_map(texts: list[str], groups: list[str] | None = None, dimensions: int = 2) -> dict:
        """MiniLM sentence embeddings of 3-50 texts: PCA coordinates (2 or 3 dimensions), the share of
        variance of each axis, and the cosine-similarity matrix."""
        smap = sentence_map.sentence_map(registry.sentence_encoder(), texts, groups, clamp(dimensions, 2, 3, 2))
        return smap.as_dict()

    def lens(prompt: str, as_chat: bool = False, top_k: int = 5) -> dict:
        """The logit lens: after the embeddings and every layer of SmolLM2, each position's top-k next
        tokens with probabilities, and the rank and probability of the model's final choice."""
        return logit_lens(registry.chat_model(), prompt, bool(as_chat), clamp(top_k, 1, MAX_TOP_K, 5)).as_dict()

    gr.api(user_errors(tokenize_text), api_name="tokenize")
    gr.api(user_errors(embedding_map), api_name="embedding_map", **queue)
    gr.api(user_errors(lens), api_name="logit_lens", **queue)
    return _handle(calls, sections, {
        "text": text, "as_chat": as_chat, "word": word, "texts": block, "map": dims, "neighbour_of": near_word,
        "neighbours": near_k, "a": a, "b": b, "c": c, "expected": expected, "query": query, "key": key,
        "layer": layer, "distance": distance, "positions": n_positions, "lens_prompt": lens_prompt,
        "lens_chat": lens_chat, "top_k": top_k})


# What a lesson may press: action -> (button label, what it loads on first use, elem_id of its result).
ACTIONS = {
    "tokenize": ("Tokenize", ("chat", "encoder"), "tokens-chat-pieces"),
    "explain": ("Explain this word", ("chat", "encoder"), "tokens-merges"),
    "embed": ("Embed and draw", ("encoder",), "tokens-map"),
    "neighbours": ("Nearest tokens", ("chat",), "tokens-neighbours"),
    "analogy": ("Compute a − b + c", ("chat",), "tokens-analogy"),
    "classics": ("Classic analogies", ("chat",), None),
    "rotary": ("Draw the score against distance", ("chat",), "tokens-rotary"),
    "learned_positions": ("Draw their similarity", ("encoder",), "tokens-learned"),
    "lens": ("Read every layer", ("chat",), "tokens-lens-grid"),
}
SECTIONS = {"tokenizers": "tokens-tokenizers", "sentences": "tokens-sentences", "vectors": "tokens-vectors",
            "positions": "tokens-positions", "lens": "tokens-lens"}


def _handle(calls: dict, sections, components: dict) -> TabHandle:
    actions = {name: Action((calls[name],), label, needs, result) for name, (label, needs, result) in ACTIONS.items()}
    return TabHandle("tokens", components, actions, sections, SECTIONS)

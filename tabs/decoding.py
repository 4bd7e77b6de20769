"""Decoding playground: what temperature, top-k, top-p and friends actually do to each token.

What it teaches: a language model outputs a probability distribution at every step; the
decoding strategy (greedy, sampling, beam search, contrastive search) and the logits
processors (penalties, temperature, top-k, top-p, min-p, typical-p, applied in the order
`generate()` applies them) decide which token is taken. Every generated token can be opened
to see the distribution after each stage, and for sampling the random draw that picked it.
"""

from __future__ import annotations

import time
from dataclasses import fields

import gradio as gr

from models.decoding.beams import beam_search
from models.decoding.code import python_snippet
from models.decoding.presets import COMPARE, CURRENT, PRESETS, compare_config
from models.decoding.steps import (
    BEAM,
    SAMPLING,
    STRATEGIES,
    DecodeConfig,
    generate_text,
    normalize,
    stream_steps,
    temperature_sweep,
)
from models.registry import CHAT, ModelRegistry
from tabs import decoding_views as views
from tabs.common import model_queue, user_errors

MAX_COMPARE = 4
MAX_PROMPT_CHARS = 4000
CONFIG_FIELDS = [f.name for f in fields(DecodeConfig)]  # the order of the control values below


def _config(values) -> DecodeConfig:
    values = list(values)
    seed_at = CONFIG_FIELDS.index("seed")
    values[seed_at] = int(values[seed_at] or 0)  # an emptied Number box arrives as None
    return DecodeConfig(*values)


_notes = views.notes_markdown  # markup (escaped) belongs to the view


def _check_prompt(prompt: str) -> None:
    if not (prompt or "").strip():
        raise gr.Error("Type a prompt first: the model needs some text to continue.")
    if len(prompt) > MAX_PROMPT_CHARS:  # ~1,000 tokens: every step re-reads the prompt through the cache
        raise gr.Error(f"The prompt has {len(prompt):,} characters; the playground takes up to "
                       f"{MAX_PROMPT_CHARS:,}. Decoding effects show best on a short prompt.")


def _empty_inspector():
    return ("", None, None, None, gr.update(value=None, visible=False))


def _inspector(steps, index, strategy: str):
    """Summary, stage table, candidates table, strip chart and contrastive table of one step."""
    if not steps or index is None or not 0 <= int(index) < len(steps):
        return _empty_inspector()
    step = steps[int(index)]
    contrastive = gr.update(value=views.contrastive_table(step), visible=bool(step.contrastive))
    return (views.step_summary(step, strategy), views.stage_table(step), views.candidate_table(step),
            views.strip_figure(step), contrastive)


@user_errors
def run_decode(registry: ModelRegistry, prompt: str, *values):
    """Stream the generation; the last update fills the step picker and opens step 1."""
    _check_prompt(prompt)
    cfg, notes = normalize(_config(values))
    if not registry.is_loaded(CHAT):
        yield (gr.skip(), _notes(notes), "Loading SmolLM2 (first use only)…", *[gr.skip()] * 9)
    lm = registry.chat_model()
    code = python_snippet(prompt, cfg)
    start = time.perf_counter()
    if cfg.strategy == BEAM:
        yield (gr.skip(), _notes(notes), f"Running beam search with {cfg.num_beams} beams…", *[gr.skip()] * 9)
        result = beam_search(lm, prompt, cfg)
        best = result.beams[0]
        status = (f"Beam search with {cfg.num_beams} beams: {best.length} tokens in "
                  f"{time.perf_counter() - start:.1f} s. The step inspector follows greedy, sampling and "
                  "contrastive runs; for beams see the Beams table.")
        yield (views.highlighted(best.pieces, best.token_probs), _notes(notes), status, [],
               gr.update(choices=[], value=None), views.beams_table(result.beams), code, *_empty_inspector())
        return
    steps = []
    skip_rest = [gr.skip()] * 9  # state, picker, beams, code and the inspector wait for the end
    for step in stream_steps(lm, prompt, cfg):
        steps.append(step)
        yield (views.highlighted([s.token for s in steps], [s.prob for s in steps]), _notes(notes),
               f"Generating… {len(steps)} tokens", *skip_rest)
    elapsed = time.perf_counter() - start
    status = (f"{cfg.strategy.capitalize()}: {len(steps)} tokens in {elapsed:.1f} s "
              f"({len(steps) / max(elapsed, 1e-9):.1f} tokens/s). Click a token or pick a step to inspect it.")
    yield (views.highlighted([s.token for s in steps], [s.prob for s in steps]), _notes(notes), status, steps,
           gr.update(choices=views.step_choices(steps), value=0), None, code,
           *_inspector(steps, 0, cfg.strategy))


@user_errors
def show_step(steps, index, strategy: str):
    return _inspector(steps, index, strategy)


@user_errors
def select_token(steps, strategy: str, evt: gr.SelectData):
    """Clicking a token in the output opens its step."""
    index = evt.index if isinstance(evt.index, int) else (evt.index or [None])[0]
    if not steps or index is None or not 0 <= index < len(steps):
        return (gr.skip(),) * 6
    return (index, *_inspector(steps, index, strategy))


@user_errors
def temperature_chart(registry: ModelRegistry, prompt: str, chat_template: bool, temperature: float,
                      top_p: float):
    """The next-token distribution of the prompt at several temperatures, with the top-p cuts."""
    _check_prompt(prompt)
    temps = sorted({0.5, 1.0, 1.5} | ({round(float(temperature), 2)} if temperature > 0 else set()))
    sweep = temperature_sweep(registry.chat_model(), prompt, bool(chat_template), temps, float(top_p))
    return views.temperature_figure(sweep, float(top_p))


def _run_config(lm, prompt: str, cfg: DecodeConfig):
    cfg, notes = normalize(cfg)
    if cfg.strategy == BEAM:
        best = beam_search(lm, prompt, cfg).beams[0]
        return views.highlighted(best.pieces, best.token_probs), notes
    steps = list(stream_steps(lm, prompt, cfg))
    return views.highlighted([s.token for s in steps], [s.prob for s in steps]), notes


@user_errors
def run_compare(registry: ModelRegistry, prompt: str, names: list[str], *values, progress=gr.Progress()):
    """Run 2-4 configurations on the same prompt and seed; one column each (returned together)."""
    _check_prompt(prompt)
    names = list(names or [])
    if not 2 <= len(names) <= MAX_COMPARE:
        raise gr.Error(f"Pick between 2 and {MAX_COMPARE} configurations to compare (you picked {len(names)}).")
    current = _config(values)
    lm = registry.chat_model()
    columns = [gr.update(value=None, label="", visible=False) for _ in range(MAX_COMPARE)]
    messages = []
    for i, name in enumerate(names):
        progress(i / len(names), desc=f"Running {name}")
        value, notes = _run_config(lm, prompt, compare_config(name, current))
        columns[i] = gr.update(value=value, label=name, visible=True)
        messages += [f"{name}: {n}" for n in notes]
    return (*columns, _notes(messages))


@user_errors
def apply_preset(name: str):
    """Fill the form with a preset; the listener chain then generates."""
    if name not in PRESETS:
        raise gr.Error(f"Unknown preset {name!r}.")
    prompt, cfg, hint = PRESETS[name]
    return (prompt, *[getattr(cfg, f) for f in CONFIG_FIELDS], f"**{name}.** {hint}")


def build(services, settings) -> None:
    registry = services.registry
    d = DecodeConfig()
    gr.Markdown("Turn the knobs, generate, then **click any token** to see the distribution it was "
                "drawn from at every stage of the pipeline.")
    preset = gr.Radio(list(PRESETS), label="One-click examples", value=None)
    preset_hint = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            prompt = gr.Textbox(value="Write a short poem about the moon.", label="Prompt", lines=3)
            chat = gr.Checkbox(value=d.chat_template, label="Wrap in the chat template (unticked: raw text)")
            strategy = gr.Radio(list(STRATEGIES), value=d.strategy, label="Strategy")
            with gr.Accordion("Sampling knobs", open=True):
                temperature = gr.Slider(0, 2, value=d.temperature, step=0.05, label="Temperature",
                                        elem_id="decoding-temperature")
                top_k = gr.Slider(0, 200, value=d.top_k, step=1, label="Top-k (0 = off)")
                top_p = gr.Slider(0, 1, value=d.top_p, step=0.01, label="Top-p (1 = off)")
                min_p = gr.Slider(0, 1, value=d.min_p, step=0.01, label="Min-p (0 = off)")
                typical_p = gr.Slider(0, 1, value=d.typical_p, step=0.01, label="Typical-p (1 = off)")
            with gr.Accordion("Penalties and length", open=True):
                rep = gr.Slider(0.5, 2, value=d.repetition_penalty, step=0.05, label="Repetition penalty (1 = off)")
                ngram = gr.Slider(0, 6, value=d.no_repeat_ngram_size, step=1, label="No-repeat n-gram size (0 = off)")
                max_new = gr.Slider(1, 200, value=d.max_new_tokens, step=1, label="Max new tokens",
                                    elem_id="decoding-max-new")
                seed = gr.Number(value=d.seed, precision=0, label="Seed", elem_id="decoding-seed")
            with gr.Accordion("Beam search", open=False):
                beams = gr.Slider(1, 8, value=d.num_beams, step=1, label="Beams")
                length_penalty = gr.Slider(-2, 2, value=d.length_penalty, step=0.1, label="Length penalty")
                n_return = gr.Slider(1, 8, value=d.num_return_sequences, step=1, label="Beams returned")
            with gr.Accordion("Contrastive search", open=False):
                alpha = gr.Slider(0, 1, value=d.penalty_alpha, step=0.05, label="Penalty α")
                ck = gr.Slider(1, 20, value=d.contrastive_k, step=1, label="Candidates (top-k)")
            generate = gr.Button("Generate", variant="primary", elem_id="decoding-generate")
        with gr.Column(scale=3):
            notes = gr.Markdown()
            output = gr.HighlightedText(label="Output (each token coloured by its probability)",
                                        color_map=views.BAND_COLORS, show_legend=True, combine_adjacent=False,
                                        elem_id="decoding-output")
            status = gr.Markdown(elem_id="decoding-status")
            with gr.Tabs():
                with gr.Tab("Step inspector"):
                    step_pick = gr.Dropdown(choices=[], label="Step", interactive=True)
                    summary = gr.Markdown(elem_id="decoding-summary")
                    strip = gr.Plot(label="The random draw on the final distribution", format="png")
                    stages = gr.Dataframe(label="Pipeline stages, in generate()'s order: penalties, then (sampling "
                                         "only) temperature, top-k, top-p, min-p, typical-p", interactive=False)
                    candidates = gr.Dataframe(label="Top candidates: probability after each stage",
                                              interactive=False)
                    contrast = gr.Dataframe(label="Contrastive candidates", interactive=False, visible=False)
                with gr.Tab("Temperature"):
                    chart_btn = gr.Button("Draw the next-token distribution")
                    chart = gr.Plot(label="Next-token distribution at several temperatures", format="png")
                with gr.Tab("Beams"):
                    beams_df = gr.Dataframe(label="Final beams (run the beam search strategy)", interactive=False)
                with gr.Tab("Compare"):
                    picks = gr.CheckboxGroup(list(COMPARE), value=[CURRENT, "Greedy", "Beam search (4 beams)"],
                                             label=f"Configurations (2 to {MAX_COMPARE}), same prompt and seed")
                    compare_btn = gr.Button("Compare")
                    compare_notes = gr.Markdown()
                    with gr.Row():
                        compare_out = [gr.HighlightedText(color_map=views.BAND_COLORS, show_legend=i == 0,
                                                          visible=i < 3, label=f"#{i + 1}",
                                                          elem_id=f"decoding-compare-{i}")
                                       for i in range(MAX_COMPARE)]
                with gr.Tab("Reproduce in Python"):
                    code = gr.Code(language="python", label="The same settings with model.generate()")
    steps_state = gr.State([])

    # ---- register listeners ------------------------------------------------------------
    controls = [strategy, temperature, top_k, top_p, min_p, typical_p, rep, ngram, max_new, seed,
                beams, length_penalty, n_return, alpha, ck, chat]
    assert len(controls) == len(CONFIG_FIELDS)
    inspector = [summary, stages, candidates, strip, contrast]
    decode_outputs = [output, notes, status, steps_state, step_pick, beams_df, code, *inspector]
    queue = model_queue(settings)

    def decode_ui(prompt, *values):
        yield from run_decode(registry, prompt, *values)

    def chart_ui(prompt, chat_template, temperature, top_p):
        return temperature_chart(registry, prompt, chat_template, temperature, top_p)

    def compare_ui(prompt, names, *values, progress=gr.Progress()):
        return run_compare(registry, prompt, names, *values, progress=progress)

    generate.click(decode_ui, [prompt, *controls], decode_outputs, api_name="decoding_generate", **queue)
    prompt.submit(decode_ui, [prompt, *controls], decode_outputs, api_name="decoding_generate_submit", **queue)
    step_pick.input(show_step, [steps_state, step_pick, strategy], inspector, api_name="decoding_step")
    output.select(select_token, [steps_state, strategy], [step_pick, *inspector], api_name="decoding_select_token")
    gr.on([chart_btn.click, generate.click, temperature.release, top_p.release], chart_ui,
          [prompt, chat, temperature, top_p], chart, api_name="decoding_temperature_chart", **queue)
    compare_btn.click(compare_ui, [prompt, picks, *controls], [*compare_out, compare_notes],
                      api_name="decoding_compare", **queue)
    preset.input(apply_preset, preset, [prompt, *controls, preset_hint], api_name="decoding_preset").success(
        decode_ui, [prompt, *controls], decode_outputs, api_name="decoding_preset_generate", **queue).success(
        chart_ui, [prompt, chat, temperature, top_p], chart, api_name="decoding_preset_chart", **queue)

    def decode(prompt: str, strategy: str = SAMPLING, temperature: float = 1.0, top_k: int = 50,
               top_p: float = 1.0, min_p: float = 0.0, typical_p: float = 1.0, repetition_penalty: float = 1.0,
               no_repeat_ngram_size: int = 0, max_new_tokens: int = 40, seed: int = 0, num_beams: int = 4,
               length_penalty: float = 1.0, num_return_sequences: int = 1, penalty_alpha: float = 0.6,
               contrastive_k: int = 4, chat_template: bool = True) -> str:
        """Generate text for the prompt with the given decoding settings; returns the generated text."""
        _check_prompt(prompt)
        values = dict(locals())
        cfg = DecodeConfig(**{f: values[f] for f in CONFIG_FIELDS})
        return generate_text(registry.chat_model(), prompt, cfg)[0]

    gr.api(user_errors(decode), api_name="decode", **queue)

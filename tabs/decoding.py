"""Decoding playground: what temperature, top-k, top-p and friends actually do to each token.

What it teaches: a language model outputs a probability distribution at every step; the
decoding strategy (greedy, sampling, beam search, contrastive search) and the logits
processors (penalties, temperature, top-k, top-p, min-p, typical-p, applied in the order
`generate()` applies them) decide which token is taken. Every generated token can be opened
to see the distribution after each stage, and for sampling the random draw that picked it.

Wiring is by name, never by position: the form's controls are a {DecodeConfig field: component}
dict passed as `inputs_kwargs`, and handlers return {component: value} dicts (a component left
out keeps its value).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import gradio as gr

from models.decoding.beams import beam_search
from models.decoding.code import python_snippet
from models.decoding.config import UI_RANGES, clamp_to_ui, seed_of
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
from models.time_limit import within
from tabs import decoding_views as views
from tabs.common import model_queue, user_errors
from tabs.handles import Action, Call, TabHandle

MAX_COMPARE = 4
MAX_PROMPT_CHARS = 4000
CONFIG_FIELDS = tuple(f.name for f in fields(DecodeConfig))  # also the API's parameter order


def config_from(knobs: dict) -> DecodeConfig:
    """The DecodeConfig of the form's values, keyed by field name."""
    seed = knobs.get("seed")
    return DecodeConfig(**{**knobs, "seed": seed_of(seed)})  # an emptied Number box arrives as None


def _check_prompt(prompt: str) -> None:
    if not (prompt or "").strip():
        raise gr.Error("Type a prompt first: the model needs some text to continue.")
    if len(prompt) > MAX_PROMPT_CHARS:  # ~1,000 tokens: every step re-reads the prompt through the cache
        raise gr.Error(f"The prompt has {len(prompt):,} characters; the playground takes up to "
                       f"{MAX_PROMPT_CHARS:,}. Decoding effects show best on a short prompt.")


@dataclass(frozen=True)
class Inspector:
    """The step inspector's components, and their values for one step."""

    summary: gr.Markdown
    stages: gr.Dataframe
    candidates: gr.Dataframe
    strip: gr.Plot
    contrast: gr.Dataframe

    def components(self) -> list:
        return [self.summary, self.stages, self.candidates, self.strip, self.contrast]

    def empty(self) -> dict:
        return {self.summary: "", self.stages: None, self.candidates: None, self.strip: None,
                self.contrast: gr.update(value=None, visible=False)}

    def show(self, steps, index, strategy: str) -> dict:
        """Summary, stage table, candidates table, strip chart and contrastive table of one step."""
        if not steps or index is None or not 0 <= int(index) < len(steps):
            return self.empty()
        step = steps[int(index)]
        return {self.summary: views.step_summary(step, strategy), self.stages: views.stage_table(step),
                self.candidates: views.candidate_table(step), self.strip: views.strip_figure(step),
                self.contrast: gr.update(value=views.contrastive_table(step), visible=bool(step.contrastive))}


@dataclass(frozen=True)
class RunView:
    """What a generation run writes; `components()` is the order of the generate endpoints' outputs."""

    output: gr.HighlightedText
    notes: gr.Markdown
    status: gr.Markdown
    steps: gr.State
    step_pick: gr.Dropdown
    beams: gr.Dataframe
    code: gr.Code
    inspector: Inspector

    def components(self) -> list:
        return [self.output, self.notes, self.status, self.steps, self.step_pick, self.beams, self.code,
                *self.inspector.components()]


@user_errors
def run_decode(registry: ModelRegistry, view: RunView, prompt: str, knobs: dict, time_limit_s: float):
    """Stream the generation; the last update fills the step picker and opens step 1. The run stops
    after `time_limit_s` with what it has (Stop ends it at the next token)."""
    _check_prompt(prompt)
    cfg, notes = normalize(config_from(knobs))
    notes = views.notes_markdown(notes)
    if not registry.is_loaded(CHAT):
        yield {view.notes: notes, view.status: "Loading SmolLM2 (first use only)…"}
    lm = registry.chat_model()
    code = python_snippet(prompt, cfg)
    start = time.perf_counter()
    if cfg.strategy == BEAM:
        yield {view.notes: notes, view.status: f"Running beam search with {cfg.num_beams} beams…"}
        result = beam_search(lm, prompt, cfg, max_time=time_limit_s)
        best = result.beams[0]
        elapsed = time.perf_counter() - start
        status = (f"Beam search with {cfg.num_beams} beams: {best.length} tokens in {elapsed:.1f} s. "
                  f"{_stopped(time_limit_s) if elapsed >= time_limit_s else ''}The step inspector follows "
                  "greedy, sampling and contrastive runs; for beams see the Beams table.")
        yield {view.output: views.highlighted(best.pieces, best.token_probs), view.notes: notes,
               view.status: status, view.steps: [], view.step_pick: gr.update(choices=[], value=None),
               view.beams: views.beams_table(result.beams), view.code: code, **view.inspector.empty()}
        return
    steps, stopped = [], []
    # state, picker, beams, code and the inspector wait for the end
    for step in within(stream_steps(lm, prompt, cfg), time_limit_s, on_timeout=lambda: stopped.append(True)):
        steps.append(step)
        yield {view.output: views.highlighted([s.token for s in steps], [s.prob for s in steps]),
               view.notes: notes, view.status: f"Generating… {len(steps)} tokens"}
    elapsed = time.perf_counter() - start
    cut = stopped and len(steps) < cfg.max_new_tokens  # the limit may pass just as the last token comes out
    status = (f"{cfg.strategy.capitalize()}: {len(steps)} tokens in {elapsed:.1f} s "
              f"({len(steps) / max(elapsed, 1e-9):.1f} tokens/s). {_stopped(time_limit_s) if cut else ''}"
              "Click a token or pick a step to inspect it.")
    yield {view.output: views.highlighted([s.token for s in steps], [s.prob for s in steps]), view.notes: notes,
           view.status: status, view.steps: steps,
           view.step_pick: gr.update(choices=views.step_choices(steps), value=0), view.beams: None,
           view.code: code, **view.inspector.show(steps, 0, cfg.strategy)}


@user_errors
def select_token(view: RunView, steps, strategy: str, index):
    """Clicking a token in the output opens its step."""
    index = index if isinstance(index, int) else (index or [None])[0]
    if not steps or index is None or not 0 <= index < len(steps):
        return gr.skip()
    return {view.step_pick: index, **view.inspector.show(steps, index, strategy)}


@user_errors
def temperature_chart(registry: ModelRegistry, prompt: str, chat_template: bool, temperature: float,
                      top_p: float):
    """The next-token distribution of the prompt at several temperatures, with the top-p cuts."""
    _check_prompt(prompt)
    temps = sorted({0.5, 1.0, 1.5} | ({round(float(temperature), 2)} if temperature > 0 else set()))
    sweep = temperature_sweep(registry.chat_model(), prompt, bool(chat_template), temps, float(top_p))
    return views.temperature_figure(sweep, float(top_p))


def _stopped(time_limit_s: float) -> str:
    return (f"Stopped after {time_limit_s:g} s: on this shared server every run has a time limit. "
            "What was produced so far is shown. ")


def _run_config(lm, prompt: str, cfg: DecodeConfig, seconds: float):
    cfg, notes = normalize(cfg)
    if cfg.strategy == BEAM:
        best = beam_search(lm, prompt, cfg, max_time=seconds).beams[0]
        return views.highlighted(best.pieces, best.token_probs), notes
    steps = list(within(stream_steps(lm, prompt, cfg), seconds))
    return views.highlighted([s.token for s in steps], [s.prob for s in steps]), notes


@user_errors
def run_compare(registry: ModelRegistry, columns: list, notes_box, prompt: str, names: list[str], knobs: dict,
                progress, time_limit_s: float):
    """Run 2-4 configurations on the same prompt and seed; one column each (returned together), all
    within one time limit (a configuration that starts after it is left out, with a note)."""
    _check_prompt(prompt)
    names = list(names or [])
    if not 2 <= len(names) <= MAX_COMPARE:
        raise gr.Error(f"Pick between 2 and {MAX_COMPARE} configurations to compare (you picked {len(names)}).")
    current = config_from(knobs)
    lm = registry.chat_model()
    updates = {column: gr.update(value=None, label="", visible=False) for column in columns}
    messages, deadline = [], time.monotonic() + time_limit_s
    for i, (column, name) in enumerate(zip(columns, names, strict=False)):
        if time.monotonic() >= deadline:
            messages.append(f"{name}: not run. {_stopped(time_limit_s)}")
            continue
        progress(i / len(names), desc=f"Running {name}")
        value, notes = _run_config(lm, prompt, compare_config(name, current), deadline - time.monotonic())
        updates[column] = gr.update(value=value, label=name, visible=True)
        messages += [f"{name}: {n}" for n in notes]
    return {**updates, notes_box: views.notes_markdown(messages)}


@user_errors
def apply_preset(prompt_box, controls: dict, hint_box, name: str) -> dict:
    """Fill the form with a preset; the listener chain then generates."""
    if name not in PRESETS:
        raise gr.Error(f"Unknown preset {name!r}.")
    prompt, cfg, hint = PRESETS[name]
    return {prompt_box: prompt, **{box: getattr(cfg, field) for field, box in controls.items()},
            hint_box: f"**{name}.** {hint}"}


def build(services, settings) -> TabHandle:
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
                temperature = gr.Slider(*UI_RANGES["temperature"], value=d.temperature, step=0.05, label="Temperature",
                                        elem_id="decoding-temperature")
                top_k = gr.Slider(*UI_RANGES["top_k"], value=d.top_k, step=1, label="Top-k (0 = off)")
                top_p = gr.Slider(*UI_RANGES["top_p"], value=d.top_p, step=0.01, label="Top-p (1 = off)")
                min_p = gr.Slider(*UI_RANGES["min_p"], value=d.min_p, step=0.01, label="Min-p (0 = off)")
                typical_p = gr.Slider(*UI_RANGES["typical_p"], value=d.typical_p, step=0.01,
                                      label="Typical-p (1 = off)")
            with gr.Accordion("Penalties and length", open=True):
                rep = gr.Slider(*UI_RANGES["repetition_penalty"], value=d.repetition_penalty, step=0.05,
                                label="Repetition penalty (1 = off)")
                ngram = gr.Slider(*UI_RANGES["no_repeat_ngram_size"], value=d.no_repeat_ngram_size, step=1,
                                  label="No-repeat n-gram size (0 = off)")
                max_new = gr.Slider(*UI_RANGES["max_new_tokens"], value=d.max_new_tokens, step=1,
                                    label="Max new tokens",
                                    elem_id="decoding-max-new")
                seed = gr.Number(value=d.seed, precision=0, label="Seed", elem_id="decoding-seed")
            with gr.Accordion("Beam search", open=False) as beam_knobs:
                beams = gr.Slider(*UI_RANGES["num_beams"], value=d.num_beams, step=1, label="Beams")
                length_penalty = gr.Slider(*UI_RANGES["length_penalty"], value=d.length_penalty, step=0.1,
                                           label="Length penalty")
                n_return = gr.Slider(*UI_RANGES["num_return_sequences"], value=d.num_return_sequences, step=1,
                                     label="Beams returned")
            with gr.Accordion("Contrastive search", open=False) as contrastive_knobs:
                alpha = gr.Slider(*UI_RANGES["penalty_alpha"], value=d.penalty_alpha, step=0.05, label="Penalty α")
                ck = gr.Slider(*UI_RANGES["contrastive_k"], value=d.contrastive_k, step=1, label="Candidates (top-k)")
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="decoding-generate", scale=3)
                stop_btn = gr.Button("Stop", elem_id="decoding-stop", scale=1)
        with gr.Column(scale=3):
            notes = gr.Markdown()
            output = gr.HighlightedText(label="Output (each token coloured by its probability)",
                                        color_map=views.BAND_COLORS, show_legend=True, combine_adjacent=False,
                                        elem_id="decoding-output")
            status = gr.Markdown(elem_id="decoding-status")
            with gr.Tabs() as sections:
                with gr.Tab("Step inspector", id="decoding-inspector"):
                    step_pick = gr.Dropdown(choices=[], label="Step", interactive=True)
                    summary = gr.Markdown(elem_id="decoding-summary")
                    strip = gr.Plot(label="The random draw on the final distribution", format="png")
                    stages = gr.Dataframe(label="Pipeline stages, in generate()'s order: penalties, then (sampling "
                                         "only) temperature, top-k, top-p, min-p, typical-p", interactive=False)
                    candidates = gr.Dataframe(label="Top candidates: probability after each stage",
                                              interactive=False)
                    contrast = gr.Dataframe(label="Contrastive candidates", interactive=False, visible=False)
                with gr.Tab("Temperature", id="decoding-temperature"):
                    chart_btn = gr.Button("Draw the next-token distribution")
                    chart = gr.Plot(label="Next-token distribution at several temperatures", format="png",
                                    elem_id="decoding-chart")
                with gr.Tab("Beams", id="decoding-beams"):
                    beams_df = gr.Dataframe(label="Final beams (run the beam search strategy)", interactive=False)
                with gr.Tab("Compare", id="decoding-compare"):
                    picks = gr.CheckboxGroup(list(COMPARE), value=[CURRENT, "Greedy", "Beam search (4 beams)"],
                                             label=f"Configurations (2 to {MAX_COMPARE}), same prompt and seed")
                    compare_btn = gr.Button("Compare")
                    compare_notes = gr.Markdown()
                    with gr.Row():
                        compare_out = [gr.HighlightedText(color_map=views.BAND_COLORS, show_legend=i == 0,
                                                          visible=i < 3, label=f"#{i + 1}",
                                                          elem_id=f"decoding-compare-{i}")
                                       for i in range(MAX_COMPARE)]
                with gr.Tab("Reproduce in Python", id="decoding-python"):
                    code = gr.Code(language="python", label="The same settings with model.generate()")
    steps_state = gr.State([])

    # ---- register listeners ------------------------------------------------------------
    controls = dict(strategy=strategy, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                    typical_p=typical_p, repetition_penalty=rep, no_repeat_ngram_size=ngram,
                    max_new_tokens=max_new, seed=seed, num_beams=beams, length_penalty=length_penalty,
                    num_return_sequences=n_return, penalty_alpha=alpha, contrastive_k=ck, chat_template=chat)
    if tuple(controls) != CONFIG_FIELDS:  # the endpoints' parameter order is this dict's order
        raise ValueError(f"The decoding controls {list(controls)} must be DecodeConfig's fields in order.")
    inspector = Inspector(summary, stages, candidates, strip, contrast)
    view = RunView(output, notes, status, steps_state, step_pick, beams_df, code, inspector)
    chart_inputs = dict(prompt=prompt, chat_template=chat, temperature=temperature, top_p=top_p)
    queue = model_queue(settings)

    def decode_ui(prompt, **knobs):
        yield from run_decode(registry, view, prompt, knobs, settings.job_time_limit_s)

    @user_errors
    def show_step_ui(steps, index, strategy):
        return inspector.show(steps, index, strategy)

    def select_ui(steps, strategy, evt: gr.SelectData):
        return select_token(view, steps, strategy, evt.index)

    def chart_ui(prompt, chat_template, temperature, top_p):
        return temperature_chart(registry, prompt, chat_template, temperature, top_p)

    def compare_ui(prompt, names, progress=gr.Progress(), **knobs):
        return run_compare(registry, compare_out, compare_notes, prompt, names, knobs, progress,
                           settings.job_time_limit_s)

    def preset_ui(name):
        return apply_preset(prompt, controls, preset_hint, name)

    decode_call = Call(decode_ui, [prompt], view.components(), queue, controls)
    chart_call = Call(chart_ui, None, chart, queue, chart_inputs)
    compare_call = Call(compare_ui, [prompt, picks], [*compare_out, compare_notes], queue, controls)
    # Public API: `decode` below (the README's API section); the tab's handlers stay callable by gradio_client
    # but are not on the API page, and the token click is private.
    hidden = {"api_visibility": "undocumented"}
    runs = [gr.on([generate.click, prompt.submit], **decode_call.kwargs(), api_name="decoding_generate", **hidden)]
    step_pick.input(show_step_ui, [steps_state, step_pick, strategy], inspector.components(), api_name="decoding_step",
                    **hidden)
    output.select(select_ui, [steps_state, strategy], [step_pick, *inspector.components()],
                  api_name="decoding_select_token", api_visibility="private")
    gr.on([chart_btn.click, generate.click, temperature.release, top_p.release], **chart_call.kwargs(),
          api_name="decoding_temperature_chart", **hidden)
    runs.append(compare_btn.click(**compare_call.kwargs(), api_name="decoding_compare", **hidden))
    runs.append(preset.input(preset_ui, preset, [prompt, *controls.values(), preset_hint], api_name="decoding_preset",
                             **hidden).success(**decode_call.kwargs(), api_name="decoding_preset_generate", **hidden))
    runs[-1].success(**chart_call.kwargs(), api_name="decoding_preset_chart", **hidden)
    # Stop ends a streamed run at its next token (its generator is not advanced again); a beam search is
    # one generate() call, bounded by the time limit.
    stop_btn.click(None, None, None, cancels=runs, api_name="decoding_stop")  # no function: private

    def decode(prompt: str, strategy: str = SAMPLING, temperature: float = 1.0, top_k: int = 50,
               top_p: float = 1.0, min_p: float = 0.0, typical_p: float = 1.0, repetition_penalty: float = 1.0,
               no_repeat_ngram_size: int = 0, max_new_tokens: int = 40, seed: int = 0, num_beams: int = 4,
               length_penalty: float = 1.0, num_return_sequences: int = 1, penalty_alpha: float = 0.6,
               contrastive_k: int = 4, chat_template: bool = True) -> str:
        """Generate text for the prompt with the given decoding settings; returns the generated text."""
        _check_prompt(prompt)
        cfg = clamp_to_ui(DecodeConfig(  # every number brought into the range of its control
            strategy=strategy, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
            repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
            max_new_tokens=max_new_tokens, seed=seed, num_beams=num_beams, length_penalty=length_penalty,
            num_return_sequences=num_return_sequences, penalty_alpha=penalty_alpha, contrastive_k=contrastive_k,
            chat_template=chat_template))
        return generate_text(registry.chat_model(), prompt, cfg, max_time=settings.job_time_limit_s)[0]

    gr.api(user_errors(decode), api_name="decode", **queue)
    actions = {"generate": Action((decode_call, chart_call), "Generate", ("chat",), "decoding-output"),
               "chart": Action((chart_call,), "Draw the next-token distribution", ("chat",), "decoding-chart"),
               "compare": Action((compare_call,), "Compare", ("chat",), "decoding-compare-0")}
    sections_ids = {"inspector": "decoding-inspector", "temperature": "decoding-temperature",
                    "beams": "decoding-beams", "compare": "decoding-compare", "python": "decoding-python"}
    return TabHandle("decoding", {"prompt": prompt, **controls, "configurations": picks}, actions, sections,
                     sections_ids, advanced=[beam_knobs, contrastive_knobs])

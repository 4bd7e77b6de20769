"""Fine-tuning, part 2: instruction-tune SmolLM2 with a LoRA adapter and compare before and after.

What it teaches: fifty examples of one answer style, sixteen LoRA steps, and the style shows
up on prompts the adapter never saw. The adapter is small, can be switched off (the base model
answers), merged into the weights (same answers, base parameter count) or dropped. Built inside
tabs/finetune.py's tab; the session state is shared with part 1 (one job at a time per session).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from models.finetune import lora_chat
from models.finetune.control import TrainingStopped
from models.finetune.jobs import Session
from tabs import finetune_views as views
from tabs.common import escape, model_queue, user_errors
from tabs.handles import Action, Call

FINETUNE_QUEUE = {"concurrency_id": "finetune", "concurrency_limit": 1}
ADAPTER_ON, ADAPTER_OFF = "adapter on", "adapter off (base model)"


@dataclass(frozen=True)
class LoraView:
    status: gr.Markdown
    curve: gr.LinePlot
    summary: gr.Markdown
    answers: gr.HTML
    probe: gr.HTML
    session: gr.State

    def components(self) -> list:
        return [self.status, self.curve, self.summary, self.answers, self.probe, self.session]

    def final(self, run, notes: list[str], session: Session) -> dict:
        return {self.status: f"Done: {run.steps_done} steps in {run.seconds:.1f} s.",
                self.curve: views.curve(run.history, views.LORA_SERIES), self.summary: views.lora_markdown(run, notes),
                self.answers: views.answers_html(run.before, run.after), self.probe: views.probe_html(run.probe),
                self.session: session}


def settings_of(rank, lr, steps, seed) -> tuple[lora_chat.LoraSettings, list[str]]:
    return lora_chat.clamp(lora_chat.LoraSettings(rank=int(rank or 0), learning_rate=float(lr or 0),
                                                  steps=int(steps or 0), seed=int(seed or 0)))


def start_job(registry, session: Session, cfg):
    lm = registry.chat_model()

    def target(stop, emit):
        run = lora_chat.train_lora(lm, cfg, stop=stop, emit=emit)
        session.lora = run
        return run

    try:
        return session.start(target)
    except RuntimeError as exc:
        raise gr.Error(str(exc)) from None


def follow(job, status, curve, series: dict, total_steps: int):
    """Page updates while a job runs: the curve as its points arrive, and its status lines."""
    history: list[dict] = []
    for event in job.events():
        if event["kind"] in ("loss", "eval"):
            history.append(event)
            yield {curve: views.curve(history, series), status: f"Training… step {event['step']} of {total_steps}"}
        elif event["kind"] == "status":
            yield {status: event["text"]}
        elif event["kind"] == "baseline":
            yield {status: f"Zero-shot baseline: {event['accuracy']:.1%} accuracy ({event['name']}). Training…"}


def outcome(job):
    """A finished job's run; a Stop before the first step becomes a message, not an error."""
    try:
        return job.outcome()
    except TrainingStopped as exc:
        raise gr.Error(str(exc)) from None


@user_errors
def lora_stream(registry, view: LoraView, session, rank, lr, steps, seed):
    session = session if isinstance(session, Session) else Session()
    cfg, notes = settings_of(rank, lr, steps, seed)
    job = start_job(registry, session, cfg)
    yield {view.status: "Starting…", view.session: session}
    yield from follow(job, view.status, view.curve, views.LORA_SERIES, cfg.steps)
    yield view.final(outcome(job), notes, session)


def _run_of(session) -> lora_chat.LoraRun:
    run = session.lora if isinstance(session, Session) else None
    if run is None:
        raise gr.Error("Train (or re-train) an adapter first: this session has none.")
    return run


def _prompt(prompt: str) -> str:
    prompt = (prompt or "").strip()
    if not prompt:
        raise gr.Error("Type a prompt first.")
    if len(prompt) > lora_chat.MAX_PROMPT_CHARS:
        raise gr.Error(f"Keep the prompt under {lora_chat.MAX_PROMPT_CHARS} characters.")
    return prompt


@dataclass(frozen=True)
class LoraParts:
    """Part 2's named components and actions, for the tab's TabHandle."""

    components: dict
    actions: dict


def build_lora(registry, settings, session: gr.State) -> LoraParts:
    train_pairs, _ = lora_chat.load_instructions()
    d = lora_chat.LoraSettings()
    with gr.Tab("2 · LoRA on SmolLM2", id="finetune-lora"):
        gr.Markdown(f"{len(train_pairs)} instruction/response pairs in one voice — every answer opens with "
                    "*Hoot hoot!* and closes with *Stay curious!* LoRA trains small rank-r matrices beside the "
                    "attention projections (q, k, v, o) of a private copy of SmolLM2; the same held-out prompts "
                    "are answered before and after (greedy, so only the adapter differs).")
        gr.Dataframe(pd.DataFrame(train_pairs[:4]), interactive=False, label="Training examples (4 of "
                     f"{len(train_pairs)})")
        with gr.Row():
            rank = gr.Slider(1, lora_chat.LIMITS["rank"][1], value=d.rank, step=1, label="LoRA rank r")
            lr = gr.Number(value=d.learning_rate, label="Learning rate", minimum=1e-5, maximum=1e-2)
            steps = gr.Slider(4, 80, value=d.steps, step=1, label="Steps")
            seed = gr.Number(value=d.seed, precision=0, label="Seed", minimum=0)
        with gr.Row():
            train = gr.Button("Train the adapter", variant="primary", elem_id="lora-train")
            stop = gr.Button("Stop", variant="stop", elem_id="lora-stop")
        status = gr.Markdown(elem_id="lora-status")
        curve = gr.LinePlot(x="step", y="value", color="series", label="Training and held-out loss", height=240)
        summary = gr.Markdown()
        answers = gr.HTML(elem_id="lora-answers")
        probe = gr.HTML()
        with gr.Accordion("Switch the adapter on and off, merge it, drop it", open=True):
            prompt = gr.Textbox(value="What is the capital of Spain?", label="Prompt")
            mode = gr.Radio([ADAPTER_ON, ADAPTER_OFF], value=ADAPTER_ON, label="Model")
            with gr.Row():
                ask = gr.Button("Answer")
                merge = gr.Button("Merge into the weights and compare")
                drop = gr.Button("Drop the adapter")
            reply = gr.Markdown(elem_id="lora-reply")

    view = LoraView(status, curve, summary, answers, probe, session)

    def train_ui(session, rank, learning_rate, steps, seed):
        yield from lora_stream(registry, view, session, rank, learning_rate, steps, seed)

    @user_errors
    def stop_ui(session):
        session = session if isinstance(session, Session) else Session()
        if session.job is None or session.job.done.is_set():
            return {status: "Nothing is training in this session."}
        session.job.request_stop()
        run = outcome(session.job)
        return view.final(run, [], session) if isinstance(run, lora_chat.LoraRun) else {status: "Stopped."}

    @user_errors
    def ask_ui(session, prompt, mode):
        run, prompt = _run_of(session), _prompt(prompt)
        lm = registry.chat_model()
        model = lora_chat.with_adapter(lm, run) if mode == ADAPTER_ON else lm.model
        return f"**{mode}:** {escape(lora_chat.answer(model, lm.tokenizer, prompt))}"

    @user_errors
    def merge_ui(session, prompt):
        report = lora_chat.compare(registry.chat_model(), _run_of(session), _prompt(prompt))
        return (f"**base:** {escape(report['base'])}\n\n**adapter:** {escape(report['adapter'])}\n\n"
                f"**merged:** {escape(report['merged'])}\n\n{views.merge_markdown(report)}")

    @user_errors
    def drop_ui(session):
        _run_of(session)
        session.lora = None
        return "The adapter is dropped: this session keeps no trained weights for SmolLM2 any more."

    train_call = Call(train_ui, [session, rank, lr, steps, seed], view.components(), FINETUNE_QUEUE)
    ask_call = Call(ask_ui, [session, prompt, mode], reply, model_queue(settings))
    # Not on the API page (finetune_lora is): still callable by gradio_client, as the browser calls them.
    hidden = {"api_visibility": "undocumented"}
    train_event = train.click(**train_call.kwargs(), api_name="lora_train", **hidden)
    stop.click(stop_ui, [session], view.components(), cancels=[train_event], api_name="lora_stop",
               concurrency_limit=None, **hidden)
    ask.click(**ask_call.kwargs(), api_name="lora_answer", **hidden)
    merge.click(merge_ui, [session, prompt], reply, api_name="lora_merge", **hidden, **model_queue(settings))
    drop.click(drop_ui, [session], reply, api_name="lora_drop", **hidden)
    components = {"lora_rank": rank, "lora_learning_rate": lr, "lora_steps": steps, "lora_seed": seed,
                  "lora_prompt": prompt, "lora_model": mode}
    actions = {"lora_train": Action((train_call,), "Train the adapter", ("chat",), "lora-answers"),
               "lora_answer": Action((ask_call,), "Answer", ("chat",), "lora-reply")}
    return LoraParts(components, actions)


def lora_api_endpoint(registry, session: gr.State, hidden) -> None:
    """api_name="finetune_lora": (steps, learning_rate, rank, seed) -> before/after answers, loss history."""
    d = lora_chat.LoraSettings()
    steps = gr.Number(value=d.steps, label="steps", visible=False)
    lr = gr.Number(value=d.learning_rate, label="learning_rate", visible=False)
    rank = gr.Number(value=d.rank, label="rank", visible=False)
    seed = gr.Number(value=d.seed, label="seed", visible=False)
    out = gr.JSON(visible=False)

    @user_errors
    def run(session, steps, learning_rate, rank, seed):
        session = session if isinstance(session, Session) else Session()
        cfg, notes = settings_of(rank, learning_rate, steps, seed)
        job = start_job(registry, session, cfg)
        for _ in job.events():
            pass
        return {**outcome(job).summary(), "notes": notes}, session

    hidden.click(run, [session, steps, lr, rank, seed], [out, session], api_name="finetune_lora", **FINETUNE_QUEUE)

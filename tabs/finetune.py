"""Fine-tuning: watch a pretrained model learn a new task in a minute on two CPU cores.

What it teaches: transfer learning. Part 1 adapts MiniLM (a small BERT) to a labelled task —
paraphrase pairs like the course's MRPC exercise, or the topic of a sentence — in three regimes:
a frozen encoder with a linear head, the top N layers, or LoRA adapters. Each run shows how much
of the model it trains, the live loss and validation curve, the scores against a zero-shot
baseline, the confusion matrix, what it still gets wrong and what moved in the embeddings; the
session's runs line up in one table. Part 2 teaches SmolLM2 an answer style with a LoRA adapter:
the same prompts before and after, the probability of the style's tokens rising, the adapter on,
off and merged.

For a class: one training job at a time in the whole app (concurrency group "finetune"; gradio
shows the queue position), Stop ends a run at the next step and keeps the best checkpoint, and a
session's trained parts live in its gr.State — in memory, dropped when the session ends.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from models.finetune import classifier as clf
from models.finetune.data import MAX_TEXT_BYTES, MAX_UPLOAD_BYTES, PAIRS, TOPICS, DataError, load_bundled, parse_csv
from models.finetune.embeddings import EmbeddingCache
from models.finetune.encoder import FROZEN, LORA, TOP_LAYERS, Regime
from models.finetune.jobs import Session
from tabs import finetune_views as views
from tabs.common import model_queue, user_errors
from tabs.finetune_lora import build_lora, follow, lora_api_endpoint, outcome
from tabs.handles import Action, Call, TabHandle

UPLOAD = "My CSV (upload)"
REGIMES = [("Frozen encoder + linear head (seconds)", FROZEN), ("Fine-tune the top N layers", TOP_LAYERS),
           ("LoRA adapters", LORA)]
# Default learning rate (of the new parameters; unfrozen pretrained layers learn 10x slower) and steps.
REGIME_DEFAULTS = {FROZEN: (1e-2, 300), TOP_LAYERS: (3e-3, 60), LORA: (3e-3, 60)}
PRESETS = {  # one-click examples: task, regime, optimizer, learning rate, steps
    "Frozen head on paraphrase pairs (seconds)": (PAIRS, FROZEN, "adamw", 1e-2, 300),
    "Top 2 layers on paraphrase pairs": (PAIRS, TOP_LAYERS, "adamw", 3e-3, 60),
    "LoRA on paraphrase pairs": (PAIRS, LORA, "adamw", 3e-3, 60),
    "Topics with a frozen head": (TOPICS, FROZEN, "adamw", 1e-2, 100),
    "Frozen head with plain SGD": (PAIRS, FROZEN, "sgd", 0.1, 300),
}
FINETUNE_QUEUE = {"concurrency_id": "finetune", "concurrency_limit": 1}


def _session(session) -> Session:
    return session if isinstance(session, Session) else Session()


def _task(choice: str, uploaded):
    if choice == UPLOAD:
        if uploaded is None:
            raise gr.Error("Upload a CSV file first (columns text,label or text,text_b,label), or pick a bundled task.")
        return uploaded
    try:
        return load_bundled(choice)
    except DataError as exc:
        raise gr.Error(str(exc)) from None


def _config(regime, layers, rank, optimizer, lr, steps, batch_size, seed) -> tuple[clf.RunConfig, list[str]]:
    try:
        return clf.clamp(clf.RunConfig(Regime(regime, int(layers or 2), int(rank or 8)), optimizer,
                                       float(lr or 0), int(steps or 0), int(batch_size or 0), int(seed or 0)))
    except ValueError as exc:
        raise gr.Error(str(exc)) from None


@dataclass(frozen=True)
class ClassifierView:
    """Part 1's result components; `final()` fills them from a finished run."""

    status: gr.Markdown
    params: gr.HTML
    curve: gr.LinePlot
    summary: gr.Markdown
    scores: gr.Dataframe
    confusion: gr.HTML
    errors: gr.Dataframe
    padding: gr.Markdown
    change: gr.Plot
    compared: gr.Dataframe
    session: gr.State

    def components(self) -> list:
        return [self.status, self.params, self.curve, self.summary, self.scores, self.confusion, self.errors,
                self.padding, self.change, self.compared, self.session]

    def final(self, run, notes: list[str], session: Session) -> dict:
        return {self.status: f"Done: {run.steps_done} steps in {run.seconds:.1f} s.",
                self.params: views.parameters_html(run.config.regime.describe(), run.trainable, run.total),
                self.curve: views.curve(run.history, views.CLASSIFIER_SERIES),
                self.summary: views.summary_markdown(run, notes), self.scores: views.scores_table(run),
                self.confusion: views.confusion_html(run.labels, run.final.confusion),
                self.errors: views.errors_table(run),
                self.padding: views.padding_markdown(run.padding, run.config.regime.kind == FROZEN),
                self.change: views.change_figure(run), self.compared: views.compared_table(session.compared),
                self.session: session}


def _classifier_job(services, cache, session: Session, task, cfg):
    encoder = services.registry.encoder_with_attention()

    def target(stop, emit):
        run = clf.train_classifier(encoder.model, copy.deepcopy(encoder.tokenizer), task, cfg, stop=stop,
                                   emit=emit, cache=cache)
        session.classifier = run
        session.remember(views.compared_row(run))
        return run

    try:
        return session.start(target)
    except RuntimeError as exc:  # this session is already training: said as it is
        raise gr.Error(str(exc)) from None


@user_errors
def train_stream(services, cache, view: ClassifierView, session, task_choice, uploaded, *settings):
    """Train in a worker thread and stream the curve; the last update shows every result."""
    session, task = _session(session), _task(task_choice, uploaded)
    cfg, notes = _config(*settings)
    job = _classifier_job(services, cache, session, task, cfg)
    yield {view.status: "Starting…", view.session: session}
    yield from follow(job, view.status, view.curve, views.CLASSIFIER_SERIES, cfg.steps)
    yield view.final(outcome(job), notes, session)


def _stop(session) -> Session | None:
    """Stop this session's job and wait for it to end (a step and the final scoring)."""
    session = _session(session)
    if session.job is None or session.job.done.is_set():
        return None
    session.job.request_stop()
    return session


def _upload(registry, path) -> tuple[object, str, pd.DataFrame]:
    size = Path(path).stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise DataError(f"The file has {size:,} bytes; the limit is {MAX_UPLOAD_BYTES:,}.")
    tokenizer = copy.deepcopy(registry.encoder_with_attention().tokenizer)
    task = parse_csv(Path(path).read_bytes(), lambda text: len(tokenizer(text)["input_ids"]))
    rows = [[ex.text, *([ex.text_b] if task.is_pair else []), task.labels[ex.label]] for ex in task.train[:5]]
    preview = pd.DataFrame(rows, columns=["text", *(["text_b"] if task.is_pair else []), "label"])
    return task, task.summary(), preview


def build(services, settings) -> TabHandle:
    registry = services.registry
    cache = EmbeddingCache()  # the base model's embeddings of a task: the same for every user
    gr.Markdown("A pretrained model learns a new task in about a minute. **Part 1** adapts MiniLM (a small BERT) "
                "to a labelled task in three regimes — compare how much each trains and what it gains. "
                "**Part 2** teaches SmolLM2 an answer style with a LoRA adapter. One training job runs at a time "
                "in the whole app; your trained models belong to this browser session only.")
    session = gr.State(Session(), time_to_live=settings.session_ttl_s, delete_callback=lambda s: s and s.close())
    uploaded = gr.State(None, time_to_live=settings.session_ttl_s)
    with gr.Tabs() as sections, gr.Tab("1 · Transfer learning on MiniLM", id="finetune-transfer"):
        preset = gr.Radio(list(PRESETS), value=None, label="One-click examples")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                task = gr.Radio([PAIRS, TOPICS, UPLOAD], value=PAIRS, label="Task")
                task_note = gr.Markdown(load_bundled(PAIRS).description)
                with gr.Accordion("Upload a CSV: text[,text_b],label", open=False):
                    upload = gr.File(file_types=[".csv"], type="filepath", label="CSV file")
                    upload_note = gr.Markdown()
                    upload_preview = gr.Dataframe(interactive=False, label="First training rows")
                regime = gr.Radio(REGIMES, value=FROZEN, label="Regime", elem_id="ft-regime")
                with gr.Row():
                    layers = gr.Slider(1, clf.LIMITS["layers"][1], value=2, step=1, label="N top layers")
                    rank = gr.Slider(1, clf.LIMITS["rank"][1], value=8, step=1, label="LoRA rank r")
                with gr.Row():
                    optimizer = gr.Radio([("AdamW", "adamw"), ("SGD", "sgd")], value="adamw", label="Optimizer")
                    lr = gr.Number(value=REGIME_DEFAULTS[FROZEN][0], label="Learning rate", minimum=1e-5, maximum=1.0)
                with gr.Row():
                    steps = gr.Slider(5, 400, value=REGIME_DEFAULTS[FROZEN][1], step=1, label="Steps",
                                      elem_id="ft-steps")
                    batch = gr.Slider(4, 64, value=16, step=1, label="Batch size")
                    seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
                with gr.Row():
                    train = gr.Button("Train", variant="primary", elem_id="ft-train")
                    stop = gr.Button("Stop", variant="stop", elem_id="ft-stop")
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id="ft-status")
                params = gr.HTML(elem_id="ft-params")
                curve = gr.LinePlot(x="step", y="value", color="series", label="Loss and validation scores",
                                    height=260, elem_id="ft-curve")
                summary = gr.Markdown(elem_id="ft-summary")
                scores = gr.Dataframe(interactive=False, label="Validation scores", elem_id="ft-scores")
                compared = gr.Dataframe(interactive=False, label="This session's runs, side by side",
                                        elem_id="ft-compared")
        with gr.Row():
            confusion = gr.HTML(label="Confusion matrix")
            change = gr.Plot(label="What moved in the embeddings", show_label=False, format="png")
        padding = gr.Markdown()
        errors = gr.Dataframe(interactive=False, label="Validation examples the model still gets wrong")
        with gr.Accordion("Try your own sentences with this session's model", open=True):
            with gr.Row():
                text_a = gr.Textbox(label="Sentence", value="The bakery opens at seven every morning.")
                text_b = gr.Textbox(label="Second sentence (pair tasks)", value="Every morning the bakery opens at 7.")
            try_btn = gr.Button("Predict")
            prediction = gr.Label(label="Prediction", num_top_classes=4, elem_id="ft-prediction")
            prediction_note = gr.Markdown()
    with sections:
        lora = build_lora(registry, settings, session)

    # ---- register listeners ------------------------------------------------------------
    view = ClassifierView(status, params, curve, summary, scores, confusion, errors, padding, change, compared,
                          session)
    settings_inputs = [regime, layers, rank, optimizer, lr, steps, batch, seed]

    def train_ui(session, task, uploaded, regime, layers, rank, optimizer, learning_rate, steps, batch_size, seed):
        yield from train_stream(services, cache, view, session, task, uploaded, regime, layers, rank, optimizer,
                                learning_rate, steps, batch_size, seed)

    @user_errors
    def stop_ui(session):
        stopped = _stop(session)
        run = outcome(stopped.job) if stopped else None
        if run is None or not isinstance(run, clf.ClassifierRun):
            return {status: "Stopped." if stopped else "Nothing is training in this session."}
        return view.final(run, [], stopped)

    @user_errors
    def preset_ui(name):
        task_name, kind, opt, rate, n = PRESETS[name]
        return {task: task_name, regime: kind, optimizer: opt, lr: rate, steps: n,
                task_note: load_bundled(task_name).description}

    @user_errors
    def regime_ui(kind):
        rate, n = REGIME_DEFAULTS[kind]
        return {lr: rate, steps: n}

    @user_errors
    def task_ui(choice, uploaded):
        return uploaded.description if choice == UPLOAD and uploaded is not None else (
            "Upload a CSV below." if choice == UPLOAD else load_bundled(choice).description)

    @user_errors
    def upload_ui(path):
        if not path:
            return gr.skip()
        try:
            parsed, note, preview = _upload(registry, path)
        except DataError as exc:
            gr.Warning(str(exc))
            return {upload_note: f"⚠️ {exc}"}
        return {uploaded: parsed, upload_note: f"✅ {note}", upload_preview: preview, task: UPLOAD,
                task_note: parsed.description}

    @user_errors
    def try_ui(session, a, b):
        result = _predict(registry, session, a, b)
        return {prediction: result["probabilities"], prediction_note: views.prediction_markdown(result)}

    train_call = Call(train_ui, [session, task, uploaded, *settings_inputs], view.components(), FINETUNE_QUEUE)
    predict_call = Call(try_ui, [session, text_a, text_b], [prediction, prediction_note], model_queue(settings))
    # Public API: finetune_classifier, finetune_predict and finetune_lora (the README's API section); the tab's
    # handlers stay callable by gradio_client but are not on the API page, its form plumbing is private.
    train_event = train.click(**train_call.kwargs(), api_name="finetune_train", api_visibility="undocumented")
    preset_event = preset.input(preset_ui, preset, [task, regime, optimizer, lr, steps, task_note],
                                api_name="finetune_preset", api_visibility="undocumented").success(
        **train_call.kwargs(), api_name="finetune_preset_train", api_visibility="undocumented")
    stop.click(stop_ui, [session], view.components(), cancels=[train_event, preset_event], api_name="finetune_stop",
               api_visibility="undocumented", concurrency_limit=None)
    regime.input(regime_ui, regime, [lr, steps], api_name="finetune_regime_defaults", api_visibility="private")
    task.input(task_ui, [task, uploaded], task_note, api_name="finetune_task_note", api_visibility="private")
    upload.upload(upload_ui, upload, [uploaded, upload_note, upload_preview, task, task_note],
                  api_name="finetune_upload", api_visibility="undocumented", **model_queue(settings))
    try_btn.click(**predict_call.kwargs(), api_name="finetune_try", api_visibility="undocumented")
    _api_endpoints(services, cache, settings, session, uploaded, [text_a, text_b])
    components = {"task": task, "regime": regime, "layers": layers, "rank": rank, "optimizer": optimizer,
                  "learning_rate": lr, "steps": steps, "batch_size": batch, "seed": seed, "text": text_a,
                  "text_b": text_b, **lora.components}
    actions = {"train": Action((train_call,), "Train", ("encoder-eager",), "ft-summary"),
               "predict": Action((predict_call,), "Predict", ("encoder-eager",), "ft-prediction"),
               **lora.actions}
    return TabHandle("finetune", components, actions, sections, {"transfer": "finetune-transfer",
                                                                  "lora": "finetune-lora"})


def _predict(registry, session, text: str, text_b: str) -> dict:
    session = _session(session)
    run = session.classifier
    if run is None:
        raise gr.Error("Train a model first (press Train), then try your own sentences with it.")
    texts = [text, text_b] if run.pair else [text]
    if not all((t or "").strip() for t in texts):
        raise gr.Error("Type a sentence" + (" in both boxes: this is a pair task." if run.pair else "."))
    if any(len(t.encode()) > MAX_TEXT_BYTES for t in texts):
        raise gr.Error(f"Keep each sentence under {MAX_TEXT_BYTES} bytes.")
    encoder = registry.encoder_with_attention()
    return clf.predict(encoder.model, copy.deepcopy(encoder.tokenizer), run, text.strip(),
                       text_b.strip() if run.pair else None)


def _api_endpoints(services, cache, settings, session, uploaded, predict_inputs: list) -> None:
    """Scriptable endpoints on hidden triggers, so they share the session's gr.State with the page:
    finetune_classifier (train, returns the scores), finetune_predict (uses the trained model),
    finetune_lora (train an adapter, returns before/after answers). Their inputs are unbounded hidden
    fields, so a number outside the UI's range is clamped to it (and noted), not refused."""
    out = gr.JSON(visible=False)
    classifier_trigger, predict_trigger, lora_trigger = (gr.Button(visible=False) for _ in range(3))
    lr, n = REGIME_DEFAULTS[FROZEN]
    classifier_inputs = [gr.Textbox(PAIRS, visible=False), gr.Textbox(FROZEN, visible=False),
                         gr.Textbox("adamw", visible=False), gr.Number(lr, visible=False), gr.Number(n, visible=False),
                         gr.Number(0, visible=False)]

    @user_errors
    def classifier_api(session, uploaded, task, regime, optimizer, learning_rate, steps, seed):
        session, task = _session(session), _task(task, uploaded)
        cfg, notes = _config(regime, 2, 8, optimizer, learning_rate, steps, 16, seed)
        job = _classifier_job(services, cache, session, task, cfg)
        for _ in job.events():  # reading the events tells the job someone is still waiting
            pass
        return {**outcome(job).summary(), "notes": notes}, session

    @user_errors
    def predict_api(session, text, text_b):
        return _predict(services.registry, session, text, text_b)

    classifier_trigger.click(classifier_api, [session, uploaded, *classifier_inputs], [out, session],
                             api_name="finetune_classifier", **FINETUNE_QUEUE)
    predict_trigger.click(predict_api, [session, *predict_inputs], out, api_name="finetune_predict",
                          **model_queue(settings))
    lora_api_endpoint(services.registry, session, lora_trigger)

"""The lesson bar and the presenter view: a lesson drives the tabs step by step.

What it is for: an instructor in front of a class (or a student alone) picks a lesson; Next
opens the step's tab, fills its inputs and runs its action, with a short narration; anything
can still be changed by hand. Deep links (?lesson=decoding&step=3) open a step from a slide;
?presenter=1 (or the toggle) switches to large, high-contrast type and shows the class link
with a QR code. With GENAI_LAB_INSTRUCTOR_KEY set, the presenter's lesson steps run in their
own queue lane, ahead of the class's.

How: every tab's build returns a TabHandle (tabs/handles.py). For each action and lane this
module registers listeners with the tab's own functions, triggered by a `gr.State` nonce: the
Next handler fills the inputs and sets the nonce of the step's first action; when it succeeds,
the next action's nonce is set, until the step is done.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from models.generation.priority import prioritized
from models.lessons.catalogue import BOOL, CHOICE, CHOICES, EMPTY, NUMBER, TEXT, Catalogue, Field, TabSpec
from models.lessons.course import Course, load_course
from models.lessons.presenter import class_link, key_matches, read_link
from models.lessons.warmup import Need, Warmup
from models.registry import CHAT, ENCODER
from tabs import lessons_views as views
from tabs.handles import Action, TabHandle

log = logging.getLogger(__name__)
BUNDLED = Path(__file__).resolve().parent.parent / "assets" / "lessons"
LANE = {"concurrency_id": "instructor", "concurrency_limit": 1}  # the presenter's own queue lane
LIGHT = {"concurrency_limit": None, "show_progress": "hidden"}  # bar handlers: no model, never queued behind one
WRONG_KEY_DELAY_S = 1.0  # one guess per second at most (the unlock listener runs one at a time)
PRESENTER_JS = "(on) => { document.body.classList.toggle('genai-presenter', !!on); return [on]; }"


def field_of(name: str, component) -> Field | None:
    """How a lesson may fill `component` (None: it cannot be filled)."""
    if isinstance(component, gr.Slider):
        integer = float(component.step or 1).is_integer() and float(component.minimum or 0).is_integer()
        return Field(name, NUMBER, component.minimum, component.maximum, integer)
    if isinstance(component, gr.Number):
        return Field(name, NUMBER, component.minimum, component.maximum, component.precision == 0)
    if isinstance(component, gr.Checkbox):
        return Field(name, BOOL)
    if isinstance(component, gr.CheckboxGroup | gr.Radio | gr.Dropdown):
        values = tuple(value for _, value in component.choices)
        multi = isinstance(component, gr.CheckboxGroup) or getattr(component, "multiselect", False)
        return Field(name, CHOICES if multi else CHOICE, choices=values,
                     custom=bool(getattr(component, "allow_custom_value", False)))
    if isinstance(component, gr.Textbox):
        return Field(name, TEXT, max_length=component.max_length)
    if isinstance(component, gr.Chatbot):
        return Field(name, EMPTY)
    return None


def catalogue_of(handles: dict[str, TabHandle]) -> Catalogue:
    tabs = {}
    for handle in handles.values():
        fields = {name: field_of(name, c) for name, c in handle.components.items()}
        tabs[handle.id] = TabSpec(handle.id, handle.title or handle.id, {n: f for n, f in fields.items() if f},
                                  {name: action.needs for name, action in handle.actions.items()},
                                  tuple(handle.section_ids), handle.value_needs)
    return Catalogue(tabs)


def registry_needs(registry) -> list[Need]:
    """The models every tab shares, as warm-up needs."""
    chat, encoder = registry.specs[CHAT].display_name, registry.specs[ENCODER].display_name
    return [Need("chat", chat, registry.chat_model, lambda: registry.is_loaded(CHAT)),
            Need("chat-eager", f"{chat} with attention weights", lambda: registry.chat_model("eager"),
                 lambda: registry.is_loaded(CHAT, "eager")),
            Need("encoder", encoder, registry.sentence_encoder, lambda: registry.is_loaded(ENCODER)),
            Need("encoder-eager", f"{encoder} with attention weights", registry.encoder_with_attention,
                 lambda: registry.is_loaded(ENCODER, "eager"))]


def lesson_folders(settings) -> list[tuple[Path, Path | None]]:
    folders = [(BUNDLED, BUNDLED.parent.parent)]
    if settings.lessons_dir:
        folders.append((Path(settings.lessons_dir), None))
    return folders


@dataclass(eq=False)
class Bar:
    """The lesson bar's components and the session's lesson state."""

    picker: gr.Dropdown
    prev: gr.Button
    next: gr.Button
    rerun: gr.Button
    presenter: gr.Checkbox
    counter: gr.Markdown
    narration: gr.Markdown
    status: gr.Markdown
    problems: gr.Markdown
    panel: gr.Accordion
    class_link: gr.HTML
    steps: gr.HTML
    key: gr.Textbox
    unlock: gr.Button
    lane_note: gr.Markdown
    timer: gr.Timer
    position: gr.State  # {"lesson": id, "step": n}; step 0 = the lesson's introduction
    plan: gr.State  # the step being run: {"id", "rest", "lane", "started", "label"}
    instructor: gr.State  # True once this session gave the instructor key


def build_bar(settings) -> Bar:
    """The lesson bar's components, rendered where this is called (above the tabs)."""
    with gr.Group(elem_id="lesson-bar"):
        with gr.Row(equal_height=True):
            picker = gr.Dropdown(choices=[], value=None, label="Lesson", scale=4, elem_id="lesson-pick")
            prev = gr.Button("◀ Prev", scale=0, min_width=90, elem_id="lesson-prev")
            nxt = gr.Button("Next ▶", variant="primary", scale=0, min_width=110, elem_id="lesson-next")
            rerun = gr.Button("Run step", scale=0, min_width=100, elem_id="lesson-rerun")
            presenter = gr.Checkbox(label="Presenter view", scale=0, min_width=170, elem_id="lesson-presenter")
        counter = gr.Markdown("Pick a lesson to go through the tabs step by step.", elem_id="lesson-step")
        narration = gr.Markdown(elem_id="lesson-narration")
        status = gr.Markdown(elem_id="lesson-status")
    problems = gr.Markdown(visible=False, elem_id="lesson-problems")
    with gr.Accordion("Class link and steps", open=True, visible=False, elem_id="lesson-panel") as panel:
        with gr.Row():
            link = gr.HTML(elem_id="lesson-class-link")
            with gr.Column():
                steps = gr.HTML(elem_id="lesson-steps")
                with gr.Row(visible=bool(settings.instructor_key)):
                    key = gr.Textbox(label="Instructor key", type="password", max_length=256, scale=3,
                                     elem_id="lesson-key")
                    unlock = gr.Button("Use the instructor lane", scale=1, elem_id="lesson-unlock")
                lane_note = gr.Markdown(elem_id="lesson-lane")
    return Bar(picker, prev, nxt, rerun, presenter, counter, narration, status, problems, panel, link, steps, key,
               unlock, lane_note, gr.Timer(2.0, active=False), gr.State(None), gr.State(None), gr.State(False))


class Lessons:
    """The course wired to the tabs: handlers are methods of (session values) -> {component: value}."""

    def __init__(self, bar: Bar, handles: list[TabHandle], main_tabs: gr.Tabs, services, settings):
        self.bar, self.main_tabs, self.settings = bar, main_tabs, settings
        self.handles = {h.id: h for h in handles}
        self.course: Course = load_course(lesson_folders(settings), catalogue_of(self.handles))
        for problem in self.course.problems:
            log.warning("Lesson file problem: %s", problem)
        self.warmup = Warmup(registry_needs(services.registry) + [n for h in handles for n in h.needs])
        self.lanes = (False, True) if settings.instructor_key else (False,)
        self.triggers = {(tab, name, lane): gr.State(None) for tab, h in self.handles.items()
                         for name in h.actions for lane in self.lanes}

    # ---- what a step shows ---------------------------------------------------------------
    def readiness(self, step) -> str:
        needs = self.course.catalogue.step_needs(step)
        return views.readiness_text([(self.warmup.needs[k].label, self.warmup.state(k)) for k in needs
                                     if k in self.warmup.needs])

    def lesson_readiness(self, lesson) -> str:
        needs = [k for k in self.course.catalogue.lesson_needs(lesson) if k in self.warmup.needs]
        return views.readiness_text([(self.warmup.needs[k].label, self.warmup.state(k)) for k in needs])

    def steps_view(self, lesson, current: int) -> str:
        return views.steps_html(lesson, current, [self.readiness(step) for step in lesson.steps])

    def intro(self, lesson) -> dict:
        bar = self.bar
        return {bar.position: {"lesson": lesson.id, "step": 0}, bar.plan: None, bar.narration: "", bar.status: "",
                bar.counter: views.intro_markdown(lesson, self.lesson_readiness(lesson)),
                bar.steps: self.steps_view(lesson, 0)}

    def step_updates(self, lesson, number: int, instructor: bool, fill: bool = True) -> dict:
        """Switch to the step's tab (and section), fill its inputs, start its first action."""
        bar, step = self.bar, lesson.step(number)
        handle = self.handles[step.tab]
        updates = {bar.position: {"lesson": lesson.id, "step": step.number}, bar.narration: step.say,
                   bar.counter: views.counter_markdown(lesson, step.number, self.readiness(step)),
                   bar.steps: self.steps_view(lesson, step.number), self.main_tabs: gr.Tabs(selected=step.tab)}
        if step.section:
            updates[handle.sections] = gr.Tabs(selected=handle.section_ids[step.section])
        if fill:  # what the steps so far set on this tab; emptying a conversation belongs to its own step only
            fields = self.course.catalogue.tabs[step.tab].fields
            updates.update({handle.components[name]: value for name, value in lesson.values_at(number).items()
                            if name in step.values or fields[name].kind != EMPTY})
        return {**updates, **self.start_plan([(step.tab, name) for name in step.press], instructor)}

    def start_plan(self, actions: list[tuple[str, str]], instructor: bool) -> dict:
        if not actions:
            return {self.bar.plan: None, self.bar.status: "Read the narration, then press **Next ▶**."}
        lane = bool(instructor) and True in self.lanes
        plan = {"id": uuid.uuid4().hex, "rest": actions, "lane": lane, "started": time.perf_counter()}
        return self.next_action(plan)

    def next_action(self, plan: dict) -> dict:
        (tab, name), rest = plan["rest"][0], plan["rest"][1:]
        action: Action = self.handles[tab].actions[name]
        return {self.bar.plan: {**plan, "rest": rest, "label": action.label},
                self.triggers[(tab, name, plan["lane"])]: f"{plan['id']}:{len(rest)}",
                self.bar.status: views.status_running(action.label, self.handles[tab].title, plan["lane"])}

    # ---- handlers ------------------------------------------------------------------------
    def move(self, position, instructor, delta: int) -> dict:
        lesson = self.course.lessons.get((position or {}).get("lesson"))
        if lesson is None:
            return {self.bar.status: "Pick a lesson first."}
        current = position.get("step", 0)
        if delta > 0 and current >= len(lesson.steps):
            return {self.bar.status: "■ That was the last step. Pick another lesson, or ◀ Prev to go back."}
        number = max(0, min(current + delta, len(lesson.steps)))
        if number == 0:
            return self.intro(lesson)
        return self.step_updates(lesson, number, instructor, fill=delta != 0)

    def pick(self, lesson_id, presenter, request: gr.Request) -> dict:
        lesson = self.course.lessons.get(lesson_id)
        if lesson is None:
            return {self.bar.status: "Pick a lesson from the list."}
        if presenter:  # the instructor is about to use it: load what it needs now
            self.warmup.start(self.course.catalogue.lesson_needs(lesson))
        return {**self.intro(lesson), self.bar.class_link: self.class_link(lesson.id, request),
                self.bar.timer: gr.Timer(active=bool(presenter))}

    def open_page(self, instructor, request: gr.Request) -> dict:
        """Page load: the lesson list, problems, and the deep link's lesson, step and presenter view."""
        link = read_link(dict(request.query_params), self.course.step_counts())
        choices = [(lesson.title, lesson.id) for lesson in self.course.lessons.values()]
        text = views.problems_markdown(self.course.problems)
        updates = {self.bar.picker: gr.Dropdown(choices=choices, value=link.lesson),
                   self.bar.problems: gr.Markdown(text, visible=bool(text)), self.bar.presenter: link.presenter}
        if link.problem:
            updates[self.bar.status] = f"⚠ {link.problem}"
        lesson = self.course.lessons.get(link.lesson)
        if lesson:
            updates.update(self.step_updates(lesson, link.step, instructor) if link.step else self.intro(lesson))
        return updates

    def continue_plan(self, plan, done_nonce) -> dict:
        """After an action succeeded: start the step's next action, or report the step done."""
        if not plan or not str(done_nonce or "").startswith(plan["id"]):
            return {self.bar.status: gr.skip()}  # a newer step replaced this one
        if plan["rest"]:
            return self.next_action(plan)
        return {self.bar.plan: None, self.bar.status: views.status_done(time.perf_counter() - plan["started"])}

    def action_failed(self, plan, done_nonce) -> dict:
        if not plan or not str(done_nonce or "").startswith(plan["id"]):
            return {self.bar.status: gr.skip()}
        return {self.bar.plan: None, self.bar.status: views.status_failed(plan.get("label", "The step"))}

    def presenter_view(self, on, position, request: gr.Request) -> dict:
        lesson = self.course.lessons.get((position or {}).get("lesson"))
        updates = {self.bar.panel: gr.Accordion(visible=bool(on)), self.bar.timer: gr.Timer(active=bool(on)),
                   self.bar.class_link: self.class_link(lesson.id if lesson else None, request)}
        if lesson:
            updates[self.bar.steps] = self.steps_view(lesson, position.get("step", 0))
            if on:
                self.warmup.start(self.course.catalogue.lesson_needs(lesson))
        if on:
            updates.update({accordion: gr.Accordion(open=False)
                            for handle in self.handles.values() for accordion in handle.advanced})
        return updates

    def refresh(self, position) -> dict:
        """Timer tick (presenter view): readiness of every step; stops once all are ready."""
        lesson = self.course.lessons.get((position or {}).get("lesson"))
        if lesson is None:
            return {self.bar.timer: gr.Timer(active=False)}
        current = position.get("step", 0)
        ready = self.warmup.all_ready(self.course.catalogue.lesson_needs(lesson))
        counter = (views.intro_markdown(lesson, self.lesson_readiness(lesson)) if current == 0 else
                   views.counter_markdown(lesson, current, self.readiness(lesson.step(current))))
        return {self.bar.steps: self.steps_view(lesson, current), self.bar.counter: counter,
                self.bar.timer: gr.Timer(active=not ready)}

    def class_link(self, lesson_id, request: gr.Request | None) -> str:
        headers = dict(getattr(request, "headers", None) or {}) if request else {}
        scheme = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
        host = (headers.get("x-forwarded-host") or headers.get("host") or "").split(",")[0].strip()
        return views.class_link_html(class_link(self.settings.class_url, host, scheme, lesson_id))

    def unlock(self, key) -> dict:
        if key_matches(self.settings.instructor_key, key):
            note = "✓ Lesson steps you run go to the **instructor lane**, ahead of the class's queue."
            return {self.bar.instructor: True, self.bar.lane_note: note, self.bar.key: ""}
        time.sleep(WRONG_KEY_DELAY_S)
        return {self.bar.instructor: False, self.bar.lane_note: "⚠ That is not the instructor key.",
                self.bar.key: ""}

    def warm_up(self, names) -> None:
        """Start-up warm-up of the lessons named in GENAI_LAB_WARMUP ('all': every lesson)."""
        needs, unknown = self.course.needs_of(list(names))
        if unknown:
            log.warning("GENAI_LAB_WARMUP names unknown lessons %s (known: %s)", unknown, list(self.course.lessons))
        if needs:
            log.info("Warm-up for lessons %s: %s", list(names), ", ".join(self.warmup.needs[k].label for k in needs))
            self.warmup.start(needs)

    def summary(self) -> dict:
        """API: the lessons (each step's tab, actions and result elements), the problems of the files
        left out, and the warm-up state of everything lessons need."""
        def step_info(step) -> dict:
            handle = self.handles[step.tab]
            return {"title": step.title, "tab": step.tab, "tab_title": handle.title, "press": list(step.press),
                    "results": [handle.actions[name].result for name in step.press]}

        return {"lessons": [{"id": lesson.id, "title": lesson.title, "steps": [step_info(s) for s in lesson.steps]}
                            for lesson in self.course.lessons.values()],
                "problems": [str(p) for p in self.course.problems],
                "warmup": {key: self.warmup.state(key) for key in self.warmup.needs}}


def wire(bar: Bar, handles: list[TabHandle], main_tabs: gr.Tabs, services, settings, demo: gr.Blocks) -> Lessons:
    """Register the lesson bar's listeners (call inside the Blocks, after the tabs are built)."""
    lessons = Lessons(bar, handles, main_tabs, services, settings)
    triggers = list(lessons.triggers.values())
    fillable = [c for h in lessons.handles.values() for n, c in h.components.items()
                if n in lessons.course.catalogue.tabs[h.id].fields]
    sections = [h.sections for h in lessons.handles.values() if h.sections is not None]
    step_outputs = [main_tabs, *sections, *fillable, bar.position, bar.plan, bar.counter, bar.narration,
                    bar.status, bar.steps, *triggers]
    for button, delta, name in ((bar.next, 1, "lesson_next"), (bar.prev, -1, "lesson_prev"),
                                (bar.rerun, 0, "lesson_run")):
        button.click(lambda p, i, d=delta: lessons.move(p, i, d), [bar.position, bar.instructor], step_outputs,
                     api_name=name, api_visibility="private", **LIGHT)
    bar.picker.input(lessons.pick, [bar.picker, bar.presenter], [*step_outputs, bar.class_link, bar.timer],
                     api_name="lesson_pick", api_visibility="private", **LIGHT)
    demo.load(lessons.open_page, bar.instructor, [bar.picker, bar.problems, bar.presenter, *step_outputs],
              api_name="lesson_open", api_visibility="private", **LIGHT)
    advanced = [a for h in lessons.handles.values() for a in h.advanced]
    bar.presenter.change(lessons.presenter_view, [bar.presenter, bar.position],
                         [bar.panel, bar.timer, bar.class_link, bar.steps, *advanced], js=PRESENTER_JS,
                         api_name="lesson_presenter", api_visibility="private", **LIGHT)
    bar.timer.tick(lessons.refresh, bar.position, [bar.steps, bar.counter, bar.timer], api_name="lesson_ready",
                   api_visibility="private", **LIGHT)
    gr.on([bar.unlock.click, bar.key.submit], lessons.unlock, bar.key, [bar.instructor, bar.lane_note, bar.key],
          api_name="lesson_unlock", api_visibility="private", concurrency_id="lesson-unlock", concurrency_limit=1)
    for (tab, name, lane), trigger in lessons.triggers.items():
        _wire_action(lessons, trigger, lessons.handles[tab].actions[name], f"lesson_{tab}_{name}", lane, triggers)
    gr.api(lessons.summary, api_name="lessons")
    return lessons


def _require_lane(instructor) -> None:
    if not instructor:
        raise gr.Error("The instructor lane needs the instructor key.")


def _wire_action(lessons: Lessons, trigger: gr.State, action: Action, api: str, lane: bool, triggers: list) -> None:
    """trigger.change -> the action's calls, each on .success of the last -> the step's next action."""
    bar = lessons.bar
    api += "_lane" if lane else ""
    event = None
    if lane:  # the lane is the presenter's: a session without the key is refused before any model runs
        event = trigger.change(_require_lane, bar.instructor, None, api_name=f"{api}_check", api_visibility="private",
                               **LIGHT)
        event.failure(lessons.action_failed, [bar.plan, trigger], [bar.plan, bar.status],
                      api_name=f"{api}_check_failed", api_visibility="private", **LIGHT)
    for i, call in enumerate(action.calls):
        # A model job moves to the lane; a call outside any concurrency group keeps its queue settings.
        queue = LANE if lane and call.queue.get("concurrency_id") else call.queue
        listen = trigger.change if event is None else event.success
        # In the lane, the call's answers also go first in the generation batcher.
        kwargs = {**call.listener_kwargs(), "fn": prioritized(call.fn)} if lane else call.listener_kwargs()
        event = listen(**kwargs, **queue, api_name=f"{api}_{i}", api_visibility="private")
        event.failure(lessons.action_failed, [bar.plan, trigger], [bar.plan, bar.status],
                      api_name=f"{api}_{i}_failed", api_visibility="private", **LIGHT)
    event.success(lessons.continue_plan, [bar.plan, trigger], [bar.plan, bar.status, *triggers],
                  api_name=f"{api}_done", api_visibility="private", **LIGHT)

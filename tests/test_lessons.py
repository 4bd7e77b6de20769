"""Lessons: reading lesson files, checking them against the live app, warm-up, deep links, the
instructor key, and the lesson bar's handlers (plain calls, no browser).

The bundled lessons are checked against the components of the app as `app.build_demo` builds it
(no model is loaded to build it); a lesson with a mistake is named by file and step in the
start-up log and in the page, never as a traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from types import SimpleNamespace

import gradio as gr
import pytest

from models.lessons.catalogue import BOOL, CHOICE, CHOICES, NUMBER, TEXT, Catalogue, Field, TabSpec, validate
from models.lessons.course import load_course
from models.lessons.lesson import LessonError, parse_lesson, read_folders
from models.lessons.presenter import class_link, key_matches, read_link, step_query
from models.lessons.warmup import COLD, FAILED, QUEUED, READY, Need, Warmup

CATALOGUE = Catalogue({
    "decoding": TabSpec("decoding", "Decoding playground", {
        "prompt": Field("prompt", TEXT, max_length=4000),
        "temperature": Field("temperature", NUMBER, 0, 2),
        "top_k": Field("top_k", NUMBER, 0, 200, integer=True),
        "strategy": Field("strategy", CHOICE, choices=("greedy", "sampling")),
        "chat_template": Field("chat_template", BOOL),
        "configurations": Field("configurations", CHOICES, choices=("Greedy", "Current settings")),
    }, {"generate": ("chat",), "compare": ("chat",)}, ("inspector", "compare")),
    "attention": TabSpec("attention", "Attention visualizer", {"model": Field("model", CHOICE,
                                                                               choices=("encoder", "decoder"))},
                         {"show": ()}, value_needs={"model": {"decoder": ("chat-eager",)}}),
})
GOOD = """
title: Decoding
summary: Greedy and sampling.
steps:
  - title: Greedy
    tab: decoding
    section: inspector
    set: {prompt: "Once upon a time", strategy: greedy, temperature: 0.7}
    press: generate
    say: Greedy takes the top token.
  - tab: decoding
    set: {top_k: 10}
    press: [generate, compare]
  - tab: attention
    set: {model: decoder}
    press: show
"""


def problems_of(text: str, file: str = "assets/lessons/x.yaml") -> list[str]:
    try:
        lesson = parse_lesson(text, "x", file)
    except LessonError as exc:
        return [str(p) for p in exc.problems]
    return [str(p) for p in validate(lesson, CATALOGUE)]


# ---- reading and checking a lesson --------------------------------------------------------
def test_a_good_lesson_reads_into_steps_with_their_needs():
    lesson = parse_lesson(GOOD, "decoding", "assets/lessons/decoding.yaml")
    assert [s.number for s in lesson.steps] == [1, 2, 3]
    assert lesson.steps[1].title == "Step 2" and lesson.steps[1].press == ("generate", "compare")
    assert validate(lesson, CATALOGUE) == []
    assert CATALOGUE.step_needs(lesson.steps[0]) == ["chat"]
    assert CATALOGUE.step_needs(lesson.steps[2]) == ["chat-eager"]  # the model the step picks
    assert CATALOGUE.lesson_needs(lesson) == ["chat", "chat-eager"]
    # a step fills what the steps before it set on its tab: a deep link equals going there with Next
    assert lesson.values_at(2) == {"prompt": "Once upon a time", "strategy": "greedy", "temperature": 0.7,
                                   "top_k": 10}
    assert lesson.values_at(3) == {"model": "decoder"}
    assert lesson.step(99).number == 3 and lesson.step(-1).number == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("title: T\nsteps:\n  - tab: decoding\n    set: {prompt: [unclosed\n", "YAML syntax at line"),
    ("- just\n- a list\n", "a lesson must be a mapping"),
    ("title: T\nsteps: []\n", "'steps' must be a non-empty list"),
    ("title: T\nstep:\n  - tab: decoding\n", "unknown key 'step'"),
    ("title: T\nsteps:\n  - tab: decoding\n    prss: generate\n", "step 1: unknown key 'prss'"),
    ("title: T\nsteps:\n  - set: {}\n", "step 1: 'tab' must be a non-empty text"),
    ("title: T\nsteps:\n  - tab: decoding\n    press: {a: 1}\n", "step 1: 'press' must be an action name"),
    ("title: T\nsteps:\n  - tab: decodng\n", "step 1: unknown tab 'decodng'; did you mean 'decoding'?"),
    ("title: T\nsteps:\n  - tab: decoding\n    set: {temprature: 1}\n",
     "step 1: unknown component of the decoding tab 'temprature'; did you mean 'temperature'?"),
    ("title: T\nsteps:\n  - tab: decoding\n  - tab: decoding\n    set: {temperature: 3.5}\n",
     "step 2: 'temperature' = 3.5 is out of range (0 to 2)"),
    ("title: T\nsteps:\n  - tab: decoding\n    set: {top_k: 2.5}\n", "'top_k' takes a whole number"),
    ("title: T\nsteps:\n  - tab: decoding\n    set: {temperature: hot}\n", "'temperature' takes a number"),
    ("title: T\nsteps:\n  - tab: decoding\n    set: {strategy: beam}\n", "'strategy' = 'beam' is not one of"),
    ("title: T\nsteps:\n  - tab: decoding\n    set: {chat_template: maybe}\n", "takes true or false"),
    ("title: T\nsteps:\n  - tab: decoding\n    set: {configurations: [Greedy, Nope]}\n", "'Nope' is not one of"),
    ("title: T\nsteps:\n  - tab: decoding\n    set: {prompt: " + "x" * 4001 + "}\n", "at most 4,000 characters"),
    ("title: T\nsteps:\n  - tab: decoding\n    section: temperature\n", "unknown section of the decoding tab"),
    ("title: T\nsteps:\n  - tab: decoding\n    press: generat\n", "unknown action of the decoding tab 'generat'"),
])
def test_a_mistake_is_named_by_file_and_step(text, expected):
    found = problems_of(text)
    assert found and all(p.startswith("assets/lessons/x.yaml") for p in found), found
    assert any(expected in p for p in found), found


def test_a_mistake_repeated_in_every_step_is_reported_once():
    text = "title: T\nsteps:\n" + "  - tab: finetune\n" * 5
    assert problems_of(text) == ["assets/lessons/x.yaml, step 1: unknown tab 'finetune' (known: decoding, attention)"
                                 " (also in step 2, 3, 4, 5)"]


def test_folders_keep_good_lessons_and_name_bad_files(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfe not utf-8")
    (tmp_path / "c.yml").write_text("title: [", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a lesson", encoding="utf-8")
    other = tmp_path / "more"
    other.mkdir()
    (other / "a.yaml").write_text(GOOD, encoding="utf-8")
    lessons, problems = read_folders([(tmp_path, tmp_path), (other, None)])
    assert [lesson.id for lesson in lessons] == ["a"]
    messages = [str(p) for p in problems]
    assert any(m.startswith("b.yaml: not UTF-8") for m in messages), messages
    assert any(m.startswith("c.yml: YAML syntax") for m in messages), messages
    assert any("lesson id 'a' is already used by a.yaml" in m for m in messages), messages


def test_the_course_leaves_out_lessons_with_mistakes_in_app_order(tmp_path):
    (tmp_path / "zz.yaml").write_text(GOOD.replace("Decoding", "Zed"), encoding="utf-8")
    (tmp_path / "att.yaml").write_text("title: Attention first\nsteps:\n  - tab: attention\n    press: show\n",
                                       encoding="utf-8")
    (tmp_path / "bad.yaml").write_text("title: Bad\nsteps:\n  - tab: decoding\n    set: {temperature: 9}\n",
                                       encoding="utf-8")
    course = load_course([(tmp_path, tmp_path)], CATALOGUE)
    assert list(course.lessons) == ["zz", "att"]  # decoding comes before attention in the app
    assert [str(p) for p in course.problems] == ["bad.yaml, step 1: 'temperature' = 9 is out of range (0 to 2)"]
    assert course.needs_of(["all"]) == (["chat", "chat-eager"], [])
    assert course.needs_of(["att", "nope"]) == ([], ["nope"])


# ---- warm-up ------------------------------------------------------------------------------
def test_warmup_loads_in_order_reports_states_and_survives_a_failure(caplog):
    loaded: list[str] = []
    gate = threading.Event()

    def need(key, fail=False):
        def load():
            gate.wait(5)
            if fail:
                raise RuntimeError("no such model")
            loaded.append(key)
        return Need(key, key.upper(), load, lambda: key in loaded)

    warmup = Warmup([need("a"), need("b", fail=True), need("c")])
    assert warmup.state("a") == COLD and warmup.state("zzz") == FAILED
    with caplog.at_level(logging.WARNING, logger="models.lessons.warmup"):
        thread = warmup.start(["a", "b", "c", "a"])
        assert warmup.state("c") == QUEUED
        assert warmup.start(["c"]) is None  # already queued: not loaded twice
        gate.set()
        thread.join(10)
    assert loaded == ["a", "c"]
    assert warmup.state("a") == READY and warmup.state("b") == FAILED and "no such model" in warmup.failure("b")
    assert warmup.all_ready(["a", "c"]) and not warmup.all_ready(["a", "b"])
    assert "Warm-up of B failed" in caplog.text
    assert warmup.start(["a", "c"]) is None  # nothing left to load


# ---- deep links, class link, key -----------------------------------------------------------
def test_deep_links_are_read_and_clamped():
    counts = {"decoding": 7}
    link = read_link({"lesson": "decoding", "step": "3", "presenter": "1"}, counts)
    assert (link.lesson, link.step, link.presenter, link.problem) == ("decoding", 3, True, None)
    assert read_link({"lesson": "decoding", "step": "99"}, counts).step == 7
    assert read_link({"lesson": "decoding", "step": "-4"}, counts).step == 1
    assert read_link({"lesson": "decoding", "step": "three"}, counts).step == 1
    assert read_link({"lesson": "decoding"}, counts).step == 0  # the introduction: no step runs
    unknown = read_link({"lesson": "<script>", "step": "2"}, counts)
    assert unknown.lesson is None and "'<script>'" in unknown.problem
    assert read_link({}, counts) == read_link({"presenter": "no"}, counts)
    assert step_query("decoding", 3) == "?lesson=decoding&step=3"
    assert step_query(None, 0, presenter=True) == "?presenter=1"


def test_the_class_link_warns_about_a_loopback_address():
    local = class_link(None, "127.0.0.1:7860", "http", "rag")
    assert local.url == "http://127.0.0.1:7860/?lesson=rag" and not local.reachable
    assert "GENAI_LAB_CLASS_URL" in local.note
    assert not class_link(None, "localhost:7860").reachable and not class_link(None, "[::1]:7860").reachable
    lan = class_link(None, "192.168.1.20:7860", "http")
    assert lan.url == "http://192.168.1.20:7860/" and lan.reachable and lan.note == ""
    space = class_link("https://me-genai-lab.hf.space", "127.0.0.1:7860", "http", "decoding")
    assert space.url == "https://me-genai-lab.hf.space/?lesson=decoding" and space.reachable


def test_the_instructor_key_matches_only_itself():
    assert key_matches("s3cret-key", "s3cret-key")
    assert not key_matches("s3cret-key", "s3cret-kez") and not key_matches("s3cret-key", "")
    assert not key_matches(None, "anything") and not key_matches("", "")


# ---- the live app ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(settings, registry):
    from app import build_demo

    demo = build_demo(dataclasses.replace(settings, instructor_key="class-key-123"), registry)
    yield demo
    demo.services.housekeeper.stop()


def request(**params):
    return SimpleNamespace(query_params=params, headers={"host": "10.0.0.5:7860"}, client=None)


def test_every_bundled_lesson_matches_the_live_app(demo):
    lessons = demo.lessons
    assert lessons.course.problems == [], [str(p) for p in lessons.course.problems]
    bundled = lessons.course.lessons
    # one lesson per part of the course
    assert {"tokens", "qna", "decoding", "attention", "finetune", "rag", "quantized"} <= set(bundled)
    for lesson in bundled.values():
        assert len(lesson.steps) >= 5, lesson.id
        assert any(step.press for step in lesson.steps), lesson.id
    ids = {block.elem_id for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    for handle in lessons.handles.values():
        spec = lessons.course.catalogue.tabs[handle.id]
        assert set(spec.fields) == set(handle.components), f"{handle.id}: a named component cannot be filled"
        for name, action in handle.actions.items():
            assert action.calls and action.label, (handle.id, name)
            assert action.result is None or action.result in ids, (handle.id, name, action.result)
            assert set(action.needs) <= set(lessons.warmup.needs), (handle.id, name)
        for picks in handle.value_needs.values():
            assert {n for needs in picks.values() for n in needs} <= set(lessons.warmup.needs)


def test_next_switches_the_tab_fills_the_inputs_and_starts_the_action(demo):
    lessons, bar = demo.lessons, demo.lessons.bar
    decoding = lessons.handles["decoding"]
    updates = lessons.move({"lesson": "decoding", "step": 0}, False, 1)
    step = lessons.course.lessons["decoding"].steps[0]
    assert updates[bar.position] == {"lesson": "decoding", "step": 1}
    assert updates[lessons.main_tabs].selected == "decoding"
    assert updates[decoding.sections].selected == decoding.section_ids[step.section]
    for name, value in step.values.items():
        assert updates[decoding.components[name]] == value
    trigger = lessons.triggers[("decoding", "generate", False)]
    assert updates[trigger].startswith(updates[bar.plan]["id"])  # the class lane's trigger fired
    assert lessons.triggers[("decoding", "generate", True)] not in updates
    assert "Running **Generate**" in updates[bar.status] and "Step 1 of" in updates[bar.counter]
    # the action succeeded: no action left in the step, so it is done
    done = lessons.continue_plan(updates[bar.plan], updates[trigger])
    assert done[bar.plan] is None and "Done in" in done[bar.status]
    stale = lessons.continue_plan(updates[bar.plan], "an-older-step:0")  # a replaced step changes nothing
    assert list(stale) == [bar.status] and isinstance(stale[bar.status], type(gr.skip()))


def test_a_step_with_two_actions_runs_them_in_order_in_the_instructor_lane(demo):
    lessons, bar = demo.lessons, demo.lessons.bar
    lesson = lessons.course.lessons["attention"]
    number = next(s.number for s in lesson.steps if len(s.press) == 2)
    first, second = lesson.step(number).press
    updates = lessons.move({"lesson": "attention", "step": number - 1}, True, 1)
    assert lessons.triggers[("attention", first, True)] in updates
    plan = updates[bar.plan]
    assert plan["lane"] and plan["rest"] == [("attention", second)]
    then = lessons.continue_plan(plan, updates[lessons.triggers[("attention", first, True)]])
    assert lessons.triggers[("attention", second, True)] in then and "instructor lane" in then[bar.status]


def test_a_conversation_is_emptied_only_by_the_step_that_says_so(demo):
    lessons = demo.lessons
    chat = lessons.handles["qna"].components["conversation"]
    lesson = lessons.course.lessons["qna"]
    for step in lesson.steps:
        updates = lessons.move({"lesson": "qna", "step": step.number - 1}, False, 1)
        assert (chat in updates) == ("conversation" in step.values), step.title
    assert any("conversation" not in step.values for step in lesson.steps)  # a follow-up keeps the history


def test_moving_past_either_end(demo):
    lessons, bar = demo.lessons, demo.lessons.bar
    last = len(lessons.course.lessons["decoding"].steps)
    assert "last step" in lessons.move({"lesson": "decoding", "step": last}, False, 1)[bar.status]
    intro = lessons.move({"lesson": "decoding", "step": 1}, False, -1)
    assert intro[bar.position] == {"lesson": "decoding", "step": 0} and "Next ▶" in intro[bar.counter]
    assert "Pick a lesson" in lessons.move(None, False, 1)[bar.status]


def test_a_deep_link_opens_the_step_and_the_presenter_view(demo):
    lessons, bar = demo.lessons, demo.lessons.bar
    updates = lessons.open_page(False, request(lesson="decoding", step="4", presenter="1"))
    assert updates[bar.presenter] is True and updates[bar.picker].value == "decoding"
    assert updates[bar.position] == {"lesson": "decoding", "step": 4}
    temperature = lessons.handles["decoding"].components["temperature"]
    assert updates[temperature] == 2.0  # set by step 3, kept by step 4
    wrong = lessons.open_page(False, request(lesson="nope"))
    assert "lesson 'nope'" in wrong[bar.status] and bar.position not in wrong
    view = lessons.presenter_view(True, {"lesson": "decoding", "step": 4}, request())
    assert "<svg" in view[bar.class_link] and "http://10.0.0.5:7860/?lesson=decoding" in view[bar.class_link]
    advanced = [a for h in lessons.handles.values() for a in h.advanced]
    assert advanced and all(view[a].open is False for a in advanced)


def test_the_instructor_lane_needs_the_key(demo):
    from tabs.lessons import _require_lane

    lessons, bar = demo.lessons, demo.lessons.bar
    start = time.perf_counter()
    wrong = lessons.unlock("guess")
    assert wrong[bar.instructor] is False and time.perf_counter() - start >= 0.9  # guesses are slowed down
    assert lessons.unlock("class-key-123")[bar.instructor] is True
    with pytest.raises(gr.Error):
        _require_lane(False)
    _require_lane(True)
    lane = [fn for fn in demo.fns.values() if (fn.api_name or "").endswith("_lane_0")]
    assert lane and all(fn.concurrency_id == "instructor" for fn in lane
                        if (fn.api_name or "").startswith("lesson_decoding"))
    # the lane runs the tab's own handler, marked so its answers go first in the generation batcher
    by_name = {fn.api_name: fn.fn for fn in demo.fns.values()}
    assert by_name["lesson_qna_ask_lane_0"].__wrapped__ is by_name["lesson_qna_ask_0"]


def test_a_broken_lesson_is_logged_and_shown_never_raised(settings, registry, tmp_path, caplog):
    from app import build_demo

    (tmp_path / "broken.yaml").write_text("title: Broken\nsteps:\n  - tab: decoding\n    set: {temprature: 9}\n",
                                          encoding="utf-8")
    (tmp_path / "garbage.yaml").write_text("{{{{", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tabs.lessons"):
        demo = build_demo(dataclasses.replace(settings, lessons_dir=tmp_path), registry)
    demo.services.housekeeper.stop()
    log = caplog.text
    assert "broken.yaml, step 1: unknown component of the decoding tab 'temprature'" in log
    assert "garbage.yaml: YAML syntax" in log and "Traceback" not in log
    page = demo.lessons.open_page(False, request())[demo.lessons.bar.problems]
    assert page.visible and "broken.yaml" in page.value and "garbage.yaml" in page.value
    assert "broken" not in demo.lessons.course.lessons

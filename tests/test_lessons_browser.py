"""Lessons in a real browser (Debian chromium), offline: every bundled lesson from its first step
to its last, deep links, the presenter view, and a lesson file with a mistake.

All lessons run at once on one app, each in its own browser page (its own session), as students
of a class would: Next as soon as a step is done, so the model queue keeps both cores busy and the
whole course takes about as long as its longest lesson. Every non-local request is blocked. Each
lesson leaves a screenshot under tests/artifacts/lesson-<id>.png; the presenter view's is copied to
assets/screenshots/presenter.png when that file is missing (delete it to refresh it).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import launched_app, offline_page, screenshot

pytestmark = pytest.mark.browser
STEP_S = 900  # a step may wait for a model, a quantized build or the corpus index on 2 busy cores
COURSE_S = 1800  # the whole course, every lesson at once: a bound, not the expected time
PRESENTER_SHOT = Path(__file__).parent.parent / "assets" / "screenshots" / "presenter.png"
BUNDLED = sorted(path.stem for path in (Path(__file__).parent.parent / "assets" / "lessons").glob("*.yaml"))
DONE, FAILED = "✓ Done", "did not finish"
SEEN_JS = """() => {
  const text = (s) => ((document.querySelector(s) || {}).innerText || '');
  return {step: text('#lesson-step'), status: text('#lesson-status'),
          tabs: [...document.querySelectorAll('button[role="tab"][aria-selected="true"]')]
                  .map(b => b.innerText.trim())};
}"""

# WCAG contrast ratio of an element's text (its first paragraph) against the first opaque background
# behind it: what a projector at the back of a room shows.
CONTRAST_JS = """(selector) => {
  const el = document.querySelector(selector);
  const rgba = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  let node = el, back = [255, 255, 255];
  for (; node && node.nodeType === 1; node = node.parentElement) {
    const c = rgba(getComputedStyle(node).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) { back = c; break; }
  }
  const lum = (c) => c.slice(0, 3).map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const [hi, lo] = [lum(rgba(getComputedStyle(el.querySelector('p') || el).color)), lum(back)].sort((a, b) => b - a);
  return (hi + 0.05) / (lo + 0.05);
}"""


def text_js(selector: str) -> str:
    """A JS expression: the element's text, '' while it is not on the page yet."""
    return f"((document.querySelector('{selector}') || {{}}).innerText || '')"


def open_page(browser, url: str, viewport=(1400, 1000)):
    """A page of its own on the app (conftest.offline_page), once the lesson bar is there."""
    context, page = offline_page(browser, url, viewport)
    page.wait_for_selector("#lesson-next", timeout=120_000)
    return context, page


def wait_step(page, number: int, total: int, has_action: bool) -> None:
    """The counter shows step `number`, and its action (if any) finished without an error."""
    counter = f"Step {number} of {total}"
    page.wait_for_function(f"() => {text_js('#lesson-step')}.includes('{counter}')", timeout=60_000)
    if has_action:
        page.wait_for_function(f"() => {{ const t = {text_js('#lesson-status')};"
                               f" return t.includes('{DONE}') || t.includes('{FAILED}'); }}", timeout=STEP_S * 1000)
        status = page.locator("#lesson-status").inner_text()
        assert DONE in status, f"step {number}: {status}"


def pick(page, title: str) -> None:
    page.locator("#lesson-pick input").click()
    page.get_by_role("option", name=title).click()
    page.wait_for_function(f"() => {text_js('#lesson-step')}.includes('steps ·')", timeout=60_000)


@dataclass
class LessonRun:
    """One lesson in its own page: Next, wait for the step, Next again."""

    lesson: dict
    context: Any
    page: Any
    number: int = 0  # the step being waited for
    started: float = 0.0
    seconds: list[float] = field(default_factory=list)  # from each Next to the step's finished result
    problem: str | None = None

    @property
    def steps(self) -> list[dict]:
        return self.lesson["steps"]

    def next(self) -> None:
        self.number += 1
        self.started = time.perf_counter()
        self.page.locator("#lesson-next").click()

    def step_finished(self) -> bool:
        """True once the current step is shown and its action is over; notes what went wrong."""
        step, seen = self.steps[self.number - 1], self.page.evaluate(SEEN_JS)
        waited = time.perf_counter() - self.started
        shown = f"Step {self.number} of {len(self.steps)}" in seen["step"]
        over = not step["press"] or DONE in seen["status"] or FAILED in seen["status"]
        if not (shown and over):
            if waited > STEP_S:
                self.problem = f"step {self.number} ({step['title']}) not done after {waited:.0f} s: {seen}"
                return True
            return False
        self.seconds.append(waited)
        if step["press"] and DONE not in seen["status"]:
            self.problem = f"step {self.number} ({step['title']}): {seen['status']}"
        elif step["tab_title"] not in seen["tabs"]:
            self.problem = f"step {self.number} ({step['title']}) shows tabs {seen['tabs']}, not {step['tab_title']!r}"
        return True

    def finish(self) -> None:
        """After the last step: the screenshot, and Next past the end says so and runs nothing."""
        self.page.wait_for_timeout(500)
        screenshot(self.page, f"lesson-{self.lesson['id']}")
        self.page.locator("#lesson-next").click()
        self.page.wait_for_function(f"() => {text_js('#lesson-status')}.includes('last step')", timeout=60_000)
        if self.page.blocked_requests:
            self.problem = f"non-local requests: {self.page.blocked_requests[:5]}"


def run_course(browser, url: str, lessons: list[dict]) -> list[LessonRun]:
    """Every lesson at once, each from its first step to its last; bounded by STEP_S and COURSE_S."""
    runs = []
    for lesson in lessons:
        context, page = open_page(browser, url)
        pick(page, lesson["title"])
        runs.append(LessonRun(lesson, context, page))
    for run in runs:
        run.next()
    active, deadline = list(runs), time.perf_counter() + COURSE_S
    while active and time.perf_counter() < deadline:
        for run in list(active):
            if not run.step_finished():
                continue
            if run.problem is None and run.number < len(run.steps):
                run.next()
                continue
            if run.problem is None:
                run.finish()
            active.remove(run)
        if active:
            active[0].page.wait_for_timeout(250)
    for run in active:
        run.problem = f"still at step {run.number} when the course's {COURSE_S} s were up"
    return runs


@pytest.fixture(scope="module")
def course(app_url):
    from gradio_client import Client

    summary = Client(app_url, verbose=False).predict(api_name="/lessons")
    assert summary["problems"] == [], summary["problems"]
    return {lesson["id"]: lesson for lesson in summary["lessons"]}


def test_the_app_offers_every_bundled_lesson(course):
    assert sorted(course) == BUNDLED
    assert all(len(lesson["steps"]) >= 5 for lesson in course.values())


def test_every_bundled_lesson_runs_from_first_to_last_step(browser, app_url, course):
    start = time.perf_counter()
    runs = run_course(browser, app_url, [course[lesson_id] for lesson_id in BUNDLED])
    for run in runs:
        print(f"{run.lesson['id']}: seconds from Next to a finished step:", [round(s, 1) for s in run.seconds])
        run.context.close()
    print(f"the whole course, every lesson at once: {time.perf_counter() - start:.0f} s")
    problems = [f"{run.lesson['id']}: {run.problem}" for run in runs if run.problem]
    assert not problems, "\n".join(problems)
    assert all(len(run.seconds) == len(run.steps) for run in runs)


def test_a_deep_link_opens_the_step_filled_and_run(browser, app_url, course):
    total = len(course["decoding"]["steps"])
    context, page = open_page(browser, app_url + "?lesson=decoding&step=4")
    wait_step(page, 4, total, True)
    assert page.locator('button[role="tab"][aria-selected="true"]', has_text="Decoding playground").count() == 1
    assert page.locator("#decoding-temperature input[type=number]").input_value() == "2"
    assert page.locator("#decoding-output").inner_text().strip()
    page.locator("#lesson-prev").click()  # back one step: refilled and run again
    wait_step(page, 3, total, True)
    assert page.locator("#decoding-temperature input[type=number]").input_value() == "2"
    page.locator("#decoding-temperature input[type=number]").fill("0.5")  # the student can still change anything
    assert page.locator("#decoding-temperature input[type=number]").input_value() == "0.5"
    assert not page.blocked_requests, page.blocked_requests[:5]
    context.close()


def test_presenter_view_shows_the_class_link_and_large_type(browser, app_url, course):
    context, page = open_page(browser, app_url + "?lesson=decoding&presenter=1", viewport=(1600, 1000))
    page.wait_for_selector("#lesson-class-link svg", timeout=60_000)
    assert page.evaluate("document.body.classList.contains('genai-presenter')")
    assert page.locator("#lesson-presenter input").is_checked()
    assert "lesson=decoding" in page.locator("#lesson-class-link").inner_text()
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#lesson-narration')).fontSize)")
    for number in (1, 2, 3):
        page.locator("#lesson-next").click()
        wait_step(page, number, len(course["decoding"]["steps"]), True)
    current = page.locator("#lesson-steps .lesson-current").inner_text()
    assert current.startswith(course["decoding"]["steps"][2]["title"]), current
    for selector in ("#lesson-step", "#lesson-narration", "#lesson-status"):  # readable from the back
        assert page.evaluate(CONTRAST_JS, selector) >= 7, selector
    page.wait_for_timeout(500)
    screenshot(page, "presenter")  # the whole page
    if not PRESENTER_SHOT.exists():  # the README's copy: what the projector shows (refreshed by deleting it)
        PRESENTER_SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(PRESENTER_SHOT), full_page=False)
    assert size >= 24, size
    page.locator("#lesson-presenter input").uncheck()
    page.wait_for_function("() => !document.body.classList.contains('genai-presenter')")
    assert not page.blocked_requests, page.blocked_requests[:5]
    context.close()


def test_a_lesson_with_a_mistake_is_named_in_the_page(browser, settings, registry, tmp_path):
    (tmp_path / "broken.yaml").write_text("title: Broken\nsteps:\n  - tab: decoding\n    set: {temprature: 9}\n",
                                          encoding="utf-8")
    with launched_app(dataclasses.replace(settings, lessons_dir=tmp_path), registry) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#lesson-problems", timeout=60_000)
        text = page.locator("#lesson-problems").inner_text()
        assert "broken.yaml" in text and "step 1" in text and "temprature" in text and "temperature" in text
        page.close()

"""Lessons in front of a class: how long each step takes after warm-up, the first click after
warm-up against the first click on a fresh app, and how long the presenter waits while students
use the QnA bot, with and without the instructor lane.

The app runs as its own process and is driven by Debian's chromium through playwright, like a
presenter would, with every non-local request blocked.

1. Warm-up (GENAI_LAB_WARMUP=all, an instructor key): seconds until everything the bundled lessons
   need is loaded (models, quantized builds, the sample-corpus index), polled through /lessons.
2. Steps after warm-up: for every step of every bundled lesson, seconds from the click on Next to
   the first visible change of the step's result element ("visible"), and to the lesson bar's
   "Done" ("done"): p50 and max per lesson and over all steps.
3. Cold: the first step of each lesson on a fresh app started with GENAI_LAB_WARMUP=0 (nothing
   loaded; what earlier runs converted or quantized on disk is read from disk, as after a
   restart), against the same step after warm-up.
4. Presenter under load: STUDENTS gradio_client sessions ask the QnA bot in a loop (open
   questions, long answers) while the presenter goes Next and Prev between the QnA lesson's
   first two steps (each empties the conversation and asks its question), REPEATS times:
   seconds from the click to "Done" alone, under load in the class's queue, and under load in
   the instructor lane (after entering the key).

`python -m bench.lessons` (BENCH_LESSONS_PHASES=presenter,... for some phases); bounded: every wait has a
deadline, and the students stop at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time

from bench.server import running_app

KEY = "bench-instructor-key"
STUDENTS = 16
REPEATS = 4  # even: Next/Prev alternate between the first two steps and end where they began
WARMUP_DEADLINE_S = 1800
PHASES = ("steps", "presenter", "cold")
STEP_DEADLINE_MS = 600_000
# The presenter's step asks the QnA bot, like the students: the same queue group unless it has its lane.
PRESENTER_STEP = ("qna", 1)
QUESTIONS = ["Explain how attention works in a transformer, step by step.",
             "Write a short story about a robot who learns to paint.",
             "What are the advantages and drawbacks of renewable energy?",
             "Describe the water cycle in detail for a school report."]
# From the click: wait until the lesson bar says Running (the inputs are filled in the same update),
# take each result element's signature then (its text and media, without gradio's progress
# tracker), and note the first moment a signature differs: the step's first visible output.
OBSERVE_JS = """(ids) => {
  const sig = (el) => {
    const c = el.cloneNode(true);
    c.querySelectorAll('.wrap, .progress-text, .meta-text, .meta-text-center, .eta-bar, .progress-bar, .toast-wrap')
      .forEach(n => n.remove());
    const media = [...c.querySelectorAll('img, svg, canvas, iframe')]
      .map(m => m.tagName + (m.getAttribute('src') || m.getAttribute('srcdoc') || m.outerHTML).length).join(',');
    return c.textContent + '|' + media;
  };
  window.__firstChange = null;
  window.__sawRunning = false;
  const base = {};
  const status = () => (document.getElementById('lesson-status') || {}).innerText || '';
  window.__poll = setInterval(() => {
    if (!window.__sawRunning) {
      if (!status().includes('Running')) return;
      window.__sawRunning = true;
    }
    for (const id of ids) {
      const el = document.getElementById(id);
      if (!el) continue;
      const s = sig(el);
      if (!(id in base)) { base[id] = s; continue; }
      if (s !== base[id] && window.__firstChange === null) window.__firstChange = performance.now();
    }
  }, 25);
  return performance.now();
}"""
STATUS_JS = "() => { const t = (document.querySelector('#lesson-status') || {}).innerText || '';" \
            " return window.__sawRunning !== false && (t.includes('✓ Done') || t.includes('did not finish')); }"


def _client(url: str):
    """A gradio_client Client whose HTTP calls wait up to 2 minutes (a busy machine is slow to answer)."""
    from gradio_client import Client

    return Client(url, verbose=False, httpx_kwargs={"timeout": 120})


def _summary(client) -> dict:
    return client.predict(api_name="/lessons")


def wait_for_warmup(url: str) -> tuple[float, dict]:
    """Seconds until nothing is loading or queued any more (once the warm-up has started)."""
    start, started, client = time.perf_counter(), False, _client(url)
    while True:
        states = _summary(client)["warmup"]
        pending = [k for k, state in states.items() if state in ("loading", "queued")]
        started = started or bool(pending) or time.perf_counter() - start > 30
        if (started and not pending) or time.perf_counter() - start > WARMUP_DEADLINE_S:
            return time.perf_counter() - start, states
        time.sleep(2)


def _guard(route):
    if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")):
        return route.continue_()
    return route.abort()


def _open(browser, url: str, query: str = ""):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.route("**/*", _guard)
    page = context.new_page()
    page.goto(url + query)
    page.wait_for_selector("#lesson-next", timeout=120_000)
    if "lesson=" in query and "step=" not in query:  # the page load opened the lesson's introduction
        page.wait_for_function("() => (document.querySelector('#lesson-step') || {}).innerText"
                               "?.includes('steps ·')", timeout=120_000)
    return context, page


def _click_and_time(page, button: str, results: list[str]) -> tuple[float | None, float, bool]:
    """(seconds to the first change of a result element, seconds to Done, finished without error)."""
    t0 = page.evaluate(OBSERVE_JS, [r for r in results if r])
    page.locator(button).click()
    page.wait_for_function(STATUS_JS, timeout=STEP_DEADLINE_MS)
    t_done = page.evaluate("performance.now()")
    first = page.evaluate("window.__firstChange")
    page.evaluate("clearInterval(window.__poll)")
    ok = "✓ Done" in page.locator("#lesson-status").inner_text()
    return (None if first is None else (first - t0) / 1000), (t_done - t0) / 1000, ok


def step_timings(browser, url: str, course: list[dict]) -> dict:
    figures, visible_all, done_all = {}, [], []
    for lesson in course:
        context, page = _open(browser, url, f"?lesson={lesson['id']}")
        visible, done, failed = [], [], 0
        for number, step in enumerate(lesson["steps"], start=1):
            if not step["press"]:  # nothing to run: move on, nothing to time
                page.locator("#lesson-next").click()
                page.wait_for_function(f"() => (document.querySelector('#lesson-step') || {{}}).innerText"
                                       f"?.includes('Step {number} of')", timeout=60_000)
                continue
            first, total, ok = _click_and_time(page, "#lesson-next", step["results"])
            failed += not ok
            done.append(total)
            if first is not None:
                visible.append(first)
        first_step = lesson["steps"][0]["press"] and done[0]
        figures[lesson["id"]] = {"steps_timed": len(done), "failed": failed, "first_step_done_s": first_step,
                                 "visible_p50_s": statistics.median(visible) if visible else None,
                                 "visible_max_s": max(visible, default=None),
                                 "done_p50_s": statistics.median(done), "done_max_s": max(done)}
        visible_all += visible
        done_all += done
        context.close()
    figures["all"] = {"steps_timed": len(done_all), "visible_p50_s": statistics.median(visible_all),
                      "visible_max_s": max(visible_all), "done_p50_s": statistics.median(done_all),
                      "done_max_s": max(done_all)}
    return figures


def cold_first_steps(browser, _url: str, course: list[dict]) -> dict:
    """The first step of each lesson on a fresh app with nothing loaded (GENAI_LAB_WARMUP=0)."""
    figures = {}
    for lesson in course:
        with running_app({"GENAI_LAB_WARMUP": "0"}, timeout_s=600) as (url, _):
            context, page = _open(browser, url, f"?lesson={lesson['id']}")
            first, total, ok = _click_and_time(page, "#lesson-next", lesson["steps"][0]["results"])
            context.close()
        figures[lesson["id"]] = {"visible_s": first, "done_s": total, "ok": ok}
    return figures


def _students(url: str, stop: threading.Event, counts: list) -> list[threading.Thread]:
    def student(index: int) -> None:
        client = None
        while not stop.is_set():
            try:
                client = client or _client(url)
                client.predict(QUESTIONS[index % len(QUESTIONS)], "", api_name="/qna_answer")
                counts.append(1)
            except Exception:  # a full queue is the app's answer under load, not a bench failure
                time.sleep(1)

    threads = [threading.Thread(target=student, args=(i,), daemon=True) for i in range(STUDENTS)]
    for thread in threads:
        thread.start()
    return threads


def presenter_waits(browser, url: str, course: list[dict]) -> dict:
    lesson_id, number = PRESENTER_STEP
    step = next(lesson for lesson in course if lesson["id"] == lesson_id)["steps"][number - 1]
    context, page = _open(browser, url, f"?lesson={lesson_id}&step={number}&presenter=1")
    page.wait_for_function(STATUS_JS, timeout=STEP_DEADLINE_MS)  # the deep link ran the step once

    def runs() -> list[float]:
        """Next (step 2), Prev (step 1), ...: each step starts its conversation afresh and refills its
        question, so every run asks the same way, and every condition runs the same sequence."""
        seconds = []
        for i in range(REPEATS):
            seconds.append(_click_and_time(page, "#lesson-prev" if i % 2 else "#lesson-next", step["results"])[1])
        return seconds

    figures = {"students": STUDENTS, "repeats": REPEATS, "steps": f"{lesson_id} steps {number}-{number + 1}",
               "alone_s": runs()}
    stop, answered = threading.Event(), []
    threads = _students(url, stop, answered)
    try:
        time.sleep(20)  # the class's queue fills up
        figures["class_queue_s"] = runs()
        page.locator("#lesson-key input").fill(KEY)
        page.locator("#lesson-unlock").click()
        page.wait_for_function("() => (document.querySelector('#lesson-lane') || {}).innerText?.includes('lane')",
                               timeout=60_000)
        figures["instructor_lane_s"] = runs()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
        context.close()
    figures["student_answers_during_run"] = len(answered)
    for key in ("alone_s", "class_queue_s", "instructor_lane_s"):
        values = figures.pop(key)
        figures[key.replace("_s", "_p50_s")] = statistics.median(values)
        figures[key.replace("_s", "_max_s")] = max(values)
    figures["lane_vs_queue_p50_ratio"] = figures["instructor_lane_p50_s"] / figures["class_queue_p50_s"]
    return figures


def main(phases: tuple[str, ...] | None = None) -> dict:
    """Every phase, or those named in `phases` / BENCH_LESSONS_PHASES (steps, presenter, cold):
    warm-up is always measured; the presenter's phase warms up only the QnA lesson when alone."""
    from playwright.sync_api import sync_playwright

    phases = phases or tuple(p for p in os.environ.get("BENCH_LESSONS_PHASES", "").split(",") if p) or PHASES
    only_presenter = set(phases) == {"presenter"}
    env = {"GENAI_LAB_WARMUP": PRESENTER_STEP[0] if only_presenter else "all", "GENAI_LAB_INSTRUCTOR_KEY": KEY}
    figures: dict = {"phases": ",".join(phases)}
    with running_app(env, timeout_s=600) as (url, _), sync_playwright() as pw:
        figures["warmup_s"], figures["warmup_states"] = wait_for_warmup(url)
        course = _summary(_client(url))["lessons"]
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:  # each phase's figures are printed as they come, so a cut run still shows them
            for name, phase in (("steps", step_timings), ("presenter", presenter_waits), ("cold", cold_first_steps)):
                if name in phases:
                    figures[name] = phase(browser, url, course)
                    print(name, json.dumps(figures[name], default=str), flush=True)
        finally:
            browser.close()
    if "steps" in figures and "cold" in figures:
        figures["first_step"] = {}
        for lesson_id, run in figures.pop("cold").items():
            warm = figures["steps"][lesson_id]["first_step_done_s"]
            figures["first_step"][lesson_id] = {"cold_done_s": run["done_s"], "warm_done_s": warm,
                                                "cold_ok": run["ok"],
                                                "cold_over_warm": run["done_s"] / warm if warm else None}
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, default=str))

"""What the lesson bar shows: step counter, readiness, the step list, problems, the class link and QR.

Markdown for text (gr.Markdown sanitizes it); HTML only for the class link with its QR code and
the step list, with every text escaped. The QR code is drawn here, locally, by segno (no network).
"""

from __future__ import annotations

import segno

from models.lessons.lesson import Lesson, Problem
from models.lessons.presenter import ClassLink, step_query
from models.lessons.warmup import COLD, FAILED, LOADING, QUEUED, READY
from tabs.common import escape

# Symbols every system font has (the projector's browser may have no emoji font).
MARKS = {READY: "✓", LOADING: "◐", QUEUED: "◐", COLD: "○", FAILED: "⚠"}


def readiness_text(states: list[tuple[str, str]]) -> str:
    """One phrase for a step: states = [(label, state)] of what its actions need."""
    if not states or all(state == READY for _, state in states):
        return f"{MARKS[READY]} ready"
    waiting = [(label, state) for label, state in states if state != READY]
    label, state = next(((lb, st) for lb, st in waiting if st == FAILED), waiting[0])
    phrase = {LOADING: f"loading {label}…", QUEUED: f"{label} queued for warm-up",
              COLD: f"first run loads {label}", FAILED: f"{label} failed to load (see the log)"}[state]
    more = f" (+{len(waiting) - 1} more)" if len(waiting) > 1 else ""
    return f"{MARKS[state]} {phrase}{more}"


def intro_markdown(lesson: Lesson, readiness: str) -> str:
    return (f"**{lesson.title}** — {len(lesson.steps)} steps · {readiness}\n\n{lesson.summary}\n\n"
            "Press **Next ▶** to start: each step opens its tab, fills the inputs and runs them; "
            "you can change anything afterwards.")


def counter_markdown(lesson: Lesson, number: int, readiness: str, presenter: bool = False) -> str:
    step = lesson.step(number)
    link = step_query(lesson.id, number, presenter)
    return (f"**Step {number} of {len(lesson.steps)}** · {step.title} · {readiness} · "
            f"[link to this step]({link})")


def status_running(label: str, tab_title: str, lane: bool) -> str:
    where = " (instructor lane)" if lane else ""
    return f"◐ Running **{label}** in *{tab_title}*{where}…"


def status_done(seconds: float) -> str:
    return f"✓ Done in {seconds:.1f} s — change anything and press the tab's own button, or **Next ▶**."


def status_failed(label: str) -> str:
    return f"⚠ **{label}** did not finish (its message is shown above); press **Run step** to try again."


def problems_markdown(problems: list[Problem]) -> str:
    if not problems:
        return ""
    files = sorted({p.file for p in problems})
    lines = [f"⚠ **{len(files)} lesson file(s) could not be used** — fix them and restart the app:"]
    lines += [f"- `{p.file}`" + (f", step {p.step}" if p.step else "") + f": {p.message}" for p in problems[:20]]
    if len(problems) > 20:
        lines.append(f"- … and {len(problems) - 20} more (see the start-up log)")
    return "\n".join(lines)


def steps_html(lesson: Lesson, current: int, readiness: list[str]) -> str:
    """The lesson's steps with their readiness, the current one marked."""
    items = []
    for step, ready in zip(lesson.steps, readiness, strict=False):
        mark = ' class="lesson-current" aria-current="step"' if step.number == current else ""
        items.append(f"<li{mark}><b>{escape(step.title)}</b> <span>{escape(ready)}</span></li>")
    return f'<ol class="lesson-steps">{"".join(items)}</ol>'


def qr_svg(url: str) -> str:
    """The URL as a QR code, an inline SVG drawn by segno (black on white, with its quiet zone)."""
    return segno.make(url, error="m").svg_inline(scale=5, dark="#000", light="#fff", title=url)


def class_link_html(link: ClassLink) -> str:
    note = f'<p class="lesson-link-note">{escape(link.note)}</p>' if link.note else ""
    return (f'<div class="lesson-class-link"><div class="lesson-qr">{qr_svg(link.url)}</div>'
            f'<div><p>Students open:</p><p class="lesson-url"><a href="{escape(link.url)}" target="_blank" '
            f'rel="noopener">{escape(link.url)}</a></p>{note}</div></div>')

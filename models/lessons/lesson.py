"""A lesson file (YAML) read into plain data, with every mistake named by file and step.

    title: Decoding strategies
    summary: What greedy, sampling and beams do to every token.
    steps:
      - title: Greedy falls into a loop
        tab: decoding                 # a tab id (see the catalogue)
        section: inspector            # optional: a section (sub-tab) of that tab
        set: {prompt: "The cat sat", strategy: greedy, max_new_tokens: 80}
        press: generate               # optional: an action, or a list run in order
        say: |                        # the narration, Markdown
          Greedy always takes the most likely token...

Reading checks the file's shape only (keys, types, sizes); whether the tab, components and values
exist is checked against the live app by catalogue.validate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

MAX_FILE_BYTES = 64_000
MAX_STEPS = 40
MAX_SAY_CHARS = 3_000
MAX_TEXT_CHARS = 200
LESSON_KEYS = ("title", "summary", "steps")
STEP_KEYS = ("title", "tab", "section", "set", "press", "say")


@dataclass(frozen=True)
class Problem:
    """One mistake in a lesson file: the file, the step (1-based; None for the whole file), what."""

    file: str
    step: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}, step {self.step}" if self.step else self.file
        return f"{where}: {self.message}"


class LessonError(ValueError):
    """A lesson file that cannot be used; `problems` names each mistake."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Step:
    number: int  # 1-based
    title: str
    tab: str
    section: str | None = None
    values: dict = field(default_factory=dict)  # component name -> value
    press: tuple[str, ...] = ()  # actions of the tab, run in order
    say: str = ""  # narration, Markdown


@dataclass(frozen=True)
class Lesson:
    id: str  # the file name without its extension: the ?lesson= of a deep link
    title: str
    summary: str
    steps: tuple[Step, ...]
    file: str  # as shown in messages

    def step(self, number: int) -> Step:
        """Step `number` (1-based), clamped into the lesson."""
        return self.steps[max(1, min(int(number), len(self.steps))) - 1]

    def values_at(self, number: int) -> dict:
        """What step `number` fills: every value the steps up to it set on its tab, the latest winning,
        so a deep link or Prev gives the same inputs as going there with Next."""
        step = self.step(number)
        values: dict = {}
        for earlier in self.steps[:step.number]:
            if earlier.tab == step.tab:
                values.update(earlier.values)
        return values


def _text(value, what: str, problems: list[str], limit: int = MAX_TEXT_CHARS, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        problems.append(f"{what} must be {'a non-empty' if required else 'a'} text")
        return ""
    if len(value) > limit:
        problems.append(f"{what} has {len(value):,} characters (at most {limit:,})")
    return value.strip()


def _step(raw, number: int, file: str) -> tuple[Step | None, list[Problem]]:
    messages: list[str] = []
    if not isinstance(raw, dict):
        return None, [Problem(file, number, "a step must be a mapping with tab, set, press and say")]
    unknown = [k for k in raw if k not in STEP_KEYS]
    if unknown:
        messages.append(f"unknown key {', '.join(map(repr, unknown))} (a step has {', '.join(STEP_KEYS)})")
    tab = _text(raw.get("tab"), "'tab'", messages)
    section = _text(raw.get("section"), "'section'", messages, required=False) or None
    title = _text(raw.get("title", f"Step {number}"), "'title'", messages)
    values = raw.get("set") or {}
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        messages.append("'set' must map component names to values")
        values = {}
    press = raw.get("press") or []
    press = [press] if isinstance(press, str) else press
    if not isinstance(press, list) or not all(isinstance(p, str) and p for p in press):
        messages.append("'press' must be an action name or a list of them")
        press = []
    say = _text(raw.get("say", ""), "'say'", messages, limit=MAX_SAY_CHARS, required=False)
    problems = [Problem(file, number, m) for m in messages]
    return Step(number, title, tab, section, dict(values), tuple(press), say), problems


def parse_lesson(text: str, lesson_id: str, file: str) -> Lesson:
    """The lesson in `text` (YAML); raises LessonError naming every mistake found."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or "not valid YAML"
        raise LessonError([Problem(file, None, f"YAML syntax{where}: {reason}")]) from None
    if not isinstance(raw, dict):
        raise LessonError([Problem(file, None, "a lesson must be a mapping with title, summary and steps")])
    messages: list[str] = []
    unknown = [k for k in raw if k not in LESSON_KEYS]
    if unknown:
        messages.append(f"unknown key {', '.join(map(repr, unknown))} (a lesson has {', '.join(LESSON_KEYS)})")
    title = _text(raw.get("title"), "'title'", messages)
    summary = _text(raw.get("summary", ""), "'summary'", messages, limit=MAX_SAY_CHARS, required=False)
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        messages.append("'steps' must be a non-empty list")
        raw_steps = []
    elif len(raw_steps) > MAX_STEPS:
        messages.append(f"{len(raw_steps)} steps (at most {MAX_STEPS})")
        raw_steps = raw_steps[:MAX_STEPS]
    problems = [Problem(file, None, m) for m in messages]
    steps = []
    for number, raw_step in enumerate(raw_steps, start=1):
        step, step_problems = _step(raw_step, number, file)
        problems += step_problems
        if step:
            steps.append(step)
    if problems:
        raise LessonError(problems)
    return Lesson(lesson_id, title, summary, tuple(steps), file)


def read_lesson(path: Path, shown_as: str | None = None) -> Lesson:
    """Read one lesson file; LessonError (never another exception) for anything wrong with it."""
    file = shown_as or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LessonError([Problem(file, None, f"{size:,} bytes (a lesson file has at most {MAX_FILE_BYTES:,})")])
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LessonError([Problem(file, None, "not UTF-8 text")]) from None
    except OSError as exc:
        raise LessonError([Problem(file, None, f"cannot be read ({exc.strerror or exc})")]) from None
    return parse_lesson(text, path.stem, file)


def lesson_files(folder: Path) -> list[Path]:
    """The lesson files of a folder (*.yaml, *.yml), in name order."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def read_folders(folders: list[tuple[Path, Path | None]]) -> tuple[list[Lesson], list[Problem]]:
    """Every lesson in the folders, and the problems of the files that could not be read. Each
    folder comes with the base its file names are shown relative to (None: as they are). A lesson
    id seen twice keeps the first file."""
    lessons: dict[str, Lesson] = {}
    problems: list[Problem] = []
    for folder, base in folders:
        for path in lesson_files(folder):
            shown = str(path.relative_to(base)) if base and path.is_relative_to(base) else str(path)
            try:
                lesson = read_lesson(path, shown)
            except LessonError as exc:
                problems += exc.problems
                continue
            if lesson.id in lessons:
                problems.append(Problem(shown, None, f"lesson id {lesson.id!r} is already used by "
                                                     f"{lessons[lesson.id].file}; this file is skipped"))
                continue
            lessons[lesson.id] = lesson
    return list(lessons.values()), problems

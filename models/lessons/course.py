"""The lessons the app offers: every lesson file read, checked against the live app, in course order.

A file with a mistake is left out of the picker, and each mistake is kept as a `Problem` (file,
step, message) for the start-up log and the lesson bar; nothing here raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.lessons.catalogue import Catalogue, validate
from models.lessons.lesson import Lesson, Problem, read_folders


@dataclass(frozen=True)
class Course:
    lessons: dict[str, Lesson]  # id -> lesson, in course order
    problems: list[Problem]
    catalogue: Catalogue

    def step_counts(self) -> dict[str, int]:
        return {lesson_id: len(lesson.steps) for lesson_id, lesson in self.lessons.items()}

    def needs_of(self, names: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
        """(need keys, unknown lesson names) for the lessons named in GENAI_LAB_WARMUP ('all': every one)."""
        chosen = list(self.lessons) if "all" in names else [n for n in names if n in self.lessons]
        unknown = [n for n in names if n != "all" and n not in self.lessons]
        needs = [need for lesson_id in chosen for need in self.catalogue.lesson_needs(self.lessons[lesson_id])]
        return list(dict.fromkeys(needs)), unknown


def load_course(folders: list[tuple[Path, Path | None]], catalogue: Catalogue) -> Course:
    """Read every lesson file of `folders` (each with the base its names are shown relative to)
    and keep the ones that pass `validate`."""
    lessons, problems = read_folders(folders)
    good = []
    for lesson in lessons:
        found = validate(lesson, catalogue)
        if found:
            problems += found
        else:
            good.append(lesson)
    good.sort(key=catalogue.order)
    return Course({lesson.id: lesson for lesson in good}, problems, catalogue)

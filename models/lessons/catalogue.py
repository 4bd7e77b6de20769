"""What the live app offers a lesson, as plain data, and the check of a lesson against it.

The tabs layer describes each tab from its real components (tabs/lessons.py): the sections
(sub-tabs) it can switch to, the components a step may fill with their kind and range, and the
actions a step may press with what each needs loaded. `validate` then names every mistake of a
lesson by file and step: an unknown tab, section, component or action, or a value of the wrong
kind or out of range.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

from models.lessons.lesson import Lesson, Problem, Step

TEXT, NUMBER, BOOL, CHOICE, CHOICES, EMPTY = "text", "number", "bool", "choice", "choices", "empty"


@dataclass(frozen=True)
class Field:
    """A component a step may fill: its kind and the values it accepts."""

    name: str
    kind: str  # text | number | bool | choice (one of choices) | choices (a list of them) | empty (only [])
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    choices: tuple = ()
    custom: bool = False  # a choice outside `choices` is accepted (a dropdown with custom values)
    max_length: int | None = None

    def check(self, value) -> str | None:
        """None when `value` fits, else why not (one sentence)."""
        if self.kind == TEXT:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                return f"'{self.name}' takes a text, not {value!r}"
            if self.max_length is not None and len(str(value)) > self.max_length:
                return f"'{self.name}' takes at most {self.max_length:,} characters ({len(str(value)):,} given)"
            return None
        if self.kind == BOOL:
            return None if isinstance(value, bool) else f"'{self.name}' takes true or false, not {value!r}"
        if self.kind == NUMBER:
            return self._check_number(value)
        if self.kind == CHOICE:
            return self._check_choice(value)
        if self.kind == EMPTY:  # a conversation: a lesson can only start it afresh
            return None if value == [] else f"'{self.name}' can only be emptied (set it to [])"
        if self.kind == CHOICES:
            if not isinstance(value, list):
                return f"'{self.name}' takes a list of {self._listed()}"
            for item in value:
                wrong = self._check_choice(item)
                if wrong:
                    return wrong
            return None
        return f"'{self.name}' cannot be set by a lesson"

    def _check_number(self, value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"'{self.name}' takes a number, not {value!r}"
        if self.integer and value != int(value):
            return f"'{self.name}' takes a whole number, not {value!r}"
        low = -math.inf if self.minimum is None else self.minimum
        high = math.inf if self.maximum is None else self.maximum
        if not low <= value <= high:
            return f"'{self.name}' = {value!r} is out of range ({_fmt(self.minimum)} to {_fmt(self.maximum)})"
        return None

    def _check_choice(self, value) -> str | None:
        if value in self.choices or (self.custom and isinstance(value, str)):
            return None
        return f"'{self.name}' = {value!r} is not one of {self._listed()}"

    def _listed(self) -> str:
        return ", ".join(repr(c) for c in self.choices)


def _fmt(bound: float | None) -> str:
    if bound is None:
        return "any"
    return str(int(bound)) if float(bound).is_integer() else str(bound)


@dataclass(frozen=True)
class TabSpec:
    """One tab as a lesson sees it."""

    id: str
    title: str
    fields: dict[str, Field] = field(default_factory=dict)
    actions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # action -> what it needs loaded
    sections: tuple[str, ...] = ()
    value_needs: dict[str, dict] = field(default_factory=dict)  # component -> {value: needs} when set


@dataclass(frozen=True)
class Catalogue:
    tabs: dict[str, TabSpec]  # in the app's order

    def step_needs(self, step: Step) -> list[str]:
        """What the step's actions need loaded (and, for a step that runs one, what the values it sets
        pick: the attention tab's model), in order, each once."""
        spec = self.tabs.get(step.tab)
        if spec is None or not step.press:
            return []
        needs = [need for action in step.press for need in spec.actions.get(action, ())]
        for name, value in step.values.items():
            picked = spec.value_needs.get(name, {})
            needs += picked.get(value, ()) if isinstance(value, str | int | float | bool) else ()
        return list(dict.fromkeys(needs))

    def lesson_needs(self, lesson: Lesson) -> list[str]:
        return list(dict.fromkeys(need for step in lesson.steps for need in self.step_needs(step)))

    def order(self, lesson: Lesson) -> tuple[int, str]:
        """Sort key: a lesson goes where its first step's tab is in the app, then by title."""
        tabs = list(self.tabs)
        first = lesson.steps[0].tab if lesson.steps else ""
        return (tabs.index(first) if first in tabs else len(tabs), lesson.title)


def _unknown(kind: str, name: str, known) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(known) if known else "none"
    return f"unknown {kind} {name!r}{hint} (known: {listed})"


def check_step(step: Step, catalogue: Catalogue) -> list[str]:
    """Every mistake of one step, as sentences."""
    spec = catalogue.tabs.get(step.tab)
    if spec is None:
        return [_unknown("tab", step.tab, catalogue.tabs)]
    messages = []
    if step.section is not None and step.section not in spec.sections:
        messages.append(_unknown(f"section of the {spec.id} tab", step.section, spec.sections))
    for name, value in step.values.items():
        fld = spec.fields.get(name)
        if fld is None:
            messages.append(_unknown(f"component of the {spec.id} tab", name, spec.fields))
            continue
        wrong = fld.check(value)
        if wrong:
            messages.append(wrong)
    for action in step.press:
        if action not in spec.actions:
            messages.append(_unknown(f"action of the {spec.id} tab", action, spec.actions))
    return messages


def validate(lesson: Lesson, catalogue: Catalogue) -> list[Problem]:
    """Every mistake of the lesson against the live app's tabs, by step; a mistake repeated in
    later steps (the same unknown tab, say) is reported once, at its first step, saying where else."""
    found: dict[str, list[int]] = {}
    for step in lesson.steps:
        for message in check_step(step, catalogue):
            found.setdefault(message, []).append(step.number)
    return [Problem(lesson.file, steps[0], message + (f" (also in step {', '.join(map(str, steps[1:]))})"
                                                      if len(steps) > 1 else ""))
            for message, steps in found.items()]

"""What a tab exposes to the lesson bar: named components, named actions, sections, warm-ups.

A tab's `build(services, settings)` returns a `TabHandle`; app.build_demo hands the handles to
the lesson bar (tabs never import each other). Names are the vocabulary of lesson files
(`set: {temperature: 0.7}`, `press: generate`), so they stay stable when a tab's layout changes.

An `Action` is what a tab's own button runs, as data: one or more `Call`s (fn, inputs, outputs,
queue keywords), chained with `.success` like the tab chains them. The lesson bar registers its
own listeners with the same functions, so a step's action does exactly what the button does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.lessons.warmup import Need


@dataclass(frozen=True)
class Call:
    fn: Callable
    inputs: Any = None  # a component, a list of them, or None
    outputs: Any = None
    queue: dict = field(default_factory=dict)  # concurrency_id / concurrency_limit of the tab's listener
    inputs_kwargs: dict | None = None  # {parameter name: component}, as the tab passes it

    def listener_kwargs(self) -> dict:
        """fn, inputs, outputs (and inputs_kwargs): a listener's arguments without its queue."""
        kwargs = {"fn": self.fn, "inputs": self.inputs, "outputs": self.outputs}
        if self.inputs_kwargs:
            kwargs["inputs_kwargs"] = self.inputs_kwargs
        return kwargs

    def kwargs(self) -> dict:
        """Everything the tab's own listener passes: `button.click(**call.kwargs(), api_name=...)`."""
        return {**self.listener_kwargs(), **self.queue}


@dataclass(frozen=True)
class Action:
    """A button's work: `calls` run in order, each after the previous one succeeded."""

    calls: tuple[Call, ...]
    label: str  # the button's text, for the lesson bar ("Generate")
    needs: tuple[str, ...] = ()  # Need keys (models/lessons/warmup.py) it loads on first use
    result: str | None = None  # elem_id of the component that shows the result (tests, bench)


@dataclass
class TabHandle:
    """One tab as the lesson bar sees it."""

    id: str  # the gr.Tab id in app.py, also the `tab:` of a lesson step
    components: dict[str, Any]  # name -> component a step may fill
    actions: dict[str, Action]
    sections: Any = None  # the tab's inner gr.Tabs, if a step may switch it
    section_ids: dict[str, str] = field(default_factory=dict)  # section name -> gr.Tab id
    advanced: list = field(default_factory=list)  # accordions the presenter view collapses
    needs: list[Need] = field(default_factory=list)  # warm-ups only this tab can do
    # What a step's action also needs when the step sets a component to a value:
    # {"model": {"decoder": ("chat-eager",)}} (the attention tab loads the model the step picks).
    value_needs: dict[str, dict] = field(default_factory=dict)
    title: str = ""  # filled in by app.build_demo

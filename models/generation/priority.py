"""The presenter's answers go first: a priority mark that travels with a handler's call.

The lesson bar's instructor lane (tabs/lessons.py) runs the same handlers as the tabs' own
buttons, in its own gradio queue lane. Skipping gradio's queue is not enough when the class's
answers are being decoded: the presenter's request would still wait for a free row in the
generation batcher. So the lane runs its handlers under `prioritized`, the chat model's
`stream_answer` marks the requests it submits there (`GenerationRequest.priority`), and the
batcher admits a marked request before the class's waiting ones, into one row beyond its batch
size if the batch is full.

A context variable, not an argument: the handlers are the tabs' own, unchanged. gradio runs each
step of a generator handler in a fresh copy of the event loop's context, so the mark is set
around every step, not once.
"""

from __future__ import annotations

import contextvars
import functools
import inspect

_PRIORITY: contextvars.ContextVar[bool] = contextvars.ContextVar("generation_priority", default=False)


def has_priority() -> bool:
    """True while a `prioritized` handler runs (in this thread and context)."""
    return _PRIORITY.get()


def _call_marked(fn, *args, **kwargs):
    token = _PRIORITY.set(True)
    try:
        return fn(*args, **kwargs)
    finally:
        _PRIORITY.reset(token)


def prioritized(fn):
    """`fn` (plain or generator) with its generation requests marked as priority."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            steps = _call_marked(fn, *args, **kwargs)
            try:
                while True:
                    try:
                        item = _call_marked(next, steps)
                    except StopIteration:
                        return
                    yield item
            finally:
                steps.close()

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return _call_marked(fn, *args, **kwargs)

    return wrapper

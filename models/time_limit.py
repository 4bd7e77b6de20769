"""A time limit on a stream of results: a model job that runs too long is stopped, not waited for.

`within(stream, seconds)` passes a stream's items through until `seconds` have passed, then closes
it. Closing a generation stream is what a Stop click does (models/chat.stream_answer sets its stop
event and the model ends at the next token), so a pathological request gives its model slot back
instead of holding it until it ends. Checked after each item: a stream that produces nothing for a
long time is bounded by whatever produces its items (the queue, the batcher, a per-file budget).
`on_timeout` runs only when the stream really was cut (it had more), so an answer that ends just
as the limit passes is not reported as stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


def within(stream: Iterator[T], seconds: float, on_timeout: Callable[[], None] | None = None) -> Iterator[T]:
    """The items of `stream` until `seconds` have passed, then `on_timeout()` and the stream is closed."""
    deadline = time.monotonic() + seconds
    items = iter(stream)
    try:
        for item in items:
            yield item
            if time.monotonic() > deadline:
                # Past the limit: a stream that had just finished was not cut, so it gets no warning.
                # Its next item (one more step) tells the two apart, and is passed on, not lost.
                try:
                    item = next(items)
                except StopIteration:
                    return
                yield item
                if on_timeout is not None:
                    on_timeout()
                return
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()

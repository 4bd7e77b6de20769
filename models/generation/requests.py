"""What a caller hands the generation service, and the stream its tokens come back on.

A `GenerationRequest` is one prompt with its own length limit, end tokens and sampling settings.
`submit` returns a `TokenStream`: the caller iterates token ids as the batcher's worker thread
produces them. Closing the stream (or setting the request's `stop` event) is how a Stop click or
a disconnected session gives its batch row back; the worker frees the row at its next step.
Anything that goes wrong in the worker reaches the caller as an exception from the iteration.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

LIVENESS_POLL_S = 1.0  # how often a waiting caller checks that the worker is still there


class TokenBudgetExceeded(ValueError):
    """The request alone needs more tokens (prompt + answer) than the service may hold at once."""


class ServiceClosed(RuntimeError):
    """The generation service was shut down before the request finished."""


class GenerationFailed(RuntimeError):
    """The worker's model step failed; the original exception is the cause."""


def _for_caller(error: BaseException) -> BaseException:
    """A fresh exception for one caller's thread (one worker error may reach several callers)."""
    if isinstance(error, (TokenBudgetExceeded, ServiceClosed)):
        return type(error)(*error.args)
    if isinstance(error, MemoryError):
        return MemoryError(*error.args)
    return GenerationFailed(f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy at temperature 0, else sampled with the request's own
    seeded generator after temperature, top-k and top-p (transformers' LogitsProcessors)."""

    temperature: float = 0.0
    top_k: int = 50  # generate()'s default when sampling; 0 = off
    top_p: float = 1.0  # 1.0 = off
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    eos_ids: frozenset[int]
    sampling: Sampling = Sampling()
    stop: threading.Event = field(default_factory=threading.Event, compare=False)
    priority: bool = False  # the presenter's: admitted before waiting requests (models/generation/priority.py)

    def __post_init__(self):
        if not self.prompt_ids:
            raise ValueError("The prompt has no tokens.")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1.")

    @property
    def reserved_tokens(self) -> int:
        """Cache positions this request may occupy: its prompt and every answer token it may add."""
        return len(self.prompt_ids) + self.max_new_tokens


_END = object()


class TokenStream:
    """The caller's end of one request: iterate it for token ids; `finish_reason` is "eos",
    "length" or "stopped" once it ends. The worker side calls `put`, `finish` and `fail`."""

    def __init__(self, request: GenerationRequest, worker_alive: Callable[[], bool] = lambda: True):
        self.request = request
        self.finish_reason: str | None = None
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._worker_alive = worker_alive

    # ---- caller side -----------------------------------------------------------------
    def __iter__(self) -> Iterator[int]:
        while True:
            try:
                item = self._items.get(timeout=LIVENESS_POLL_S)
            except queue.Empty:
                if not self._worker_alive():
                    # The worker reports every failure before it stops; this is a last guard.
                    raise ServiceClosed("The generation worker stopped before this answer finished.") from None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise _for_caller(item) from item
            yield item

    def close(self) -> None:
        """Give the row back: the worker drops this request at its next step."""
        self.request.stop.set()

    @property
    def cancelled(self) -> bool:
        return self.request.stop.is_set()

    # ---- worker side -----------------------------------------------------------------
    def put(self, token: int) -> None:
        self._items.put(token)

    def finish(self, reason: str) -> None:
        self.finish_reason = reason
        self._items.put(_END)

    def fail(self, error: BaseException) -> None:
        self.finish_reason = "error"
        self._items.put(error)

"""A session's training job: a worker thread whose events stream to the page, a Stop that ends it
at the next step, and the session's results kept in memory only.

What it shows about serving a class: training is long, so the run happens in a worker thread
and the page reads its events as they come. If nobody reads them any more (the tab was closed
or the request cancelled), the job stops itself at the next step instead of training for no one.
A session keeps only the small trained parts (the head, the unfrozen layers or the adapters),
never a whole model, and drops them when the session ends.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

ABANDONED_AFTER_S = 30.0  # no reader for this long: the job stops
MAX_COMPARED_RUNS = 8


class Job:
    """`target(stop, emit)` run in a daemon thread; `events()` yields what it emits, in order."""

    def __init__(self, target: Callable[[threading.Event, Callable[[dict], None]], Any]):
        self.stop = threading.Event()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._events: queue.Queue = queue.Queue()
        self._last_read = time.monotonic()
        self._target = target
        self._thread = threading.Thread(target=self._run, name="finetune-job", daemon=True)

    def start(self) -> Job:
        self._thread.start()
        return self

    def _emit(self, event: dict) -> None:
        if time.monotonic() - self._last_read > ABANDONED_AFTER_S:
            self.stop.set()  # the reader is gone: stop at the next step
        self._events.put(event)

    def _run(self) -> None:
        try:
            self.result = self._target(self.stop, self._emit)
        except BaseException as exc:  # handed to the reader by outcome()
            self.error = exc
        finally:
            self.done.set()
            self._events.put(None)

    def events(self, poll_s: float = 1.0) -> Iterator[dict]:
        """Events as they come, until the job ends; a {"kind": "tick"} every `poll_s` of silence."""
        while True:
            self._last_read = time.monotonic()
            try:
                event = self._events.get(timeout=poll_s)
            except queue.Empty:
                yield {"kind": "tick"}
                continue
            if event is None:
                return
            yield event

    def outcome(self, timeout: float | None = None) -> Any:
        """The target's return value once it has finished (re-raising its exception)."""
        self.done.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.result

    def request_stop(self, wait_s: float = 120.0) -> bool:
        """Ask the job to stop at the next step and wait for it; True if it has ended."""
        self.stop.set()
        return self.done.wait(wait_s)


class Session:
    """One browser (or API client) session's fine-tuning state. Kept in a gr.State, so gradio drops
    it when the session ends; `close` (the State's delete callback) stops a job still running.
    A plain class: gradio deep-copies a State's initial value, and a copy is a fresh session."""

    def __init__(self):
        self.job: Job | None = None
        self.classifier: Any = None  # the last ClassifierRun
        self.lora: Any = None  # the last LoraRun
        self.compared: list[dict] = []  # one summary row per finished classifier run
        self._lock = threading.Lock()

    def start(self, target) -> Job:
        """Start a job, unless one of this session's jobs is still running."""
        with self._lock:
            if self.job is not None and not self.job.done.is_set():
                raise RuntimeError("This session is already training; press Stop or wait for it to finish.")
            self.job = Job(target).start()
            return self.job

    def remember(self, row: dict) -> None:
        self.compared = [*self.compared, row][-MAX_COMPARED_RUNS:]

    def close(self) -> None:
        if self.job is not None:
            self.job.stop.set()

    def __deepcopy__(self, memo):
        return Session()

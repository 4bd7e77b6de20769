"""Preload what lessons need (models, quantized builds, the sample-corpus index) in the background.

Each `Need` is something a tab's action loads on first use, with a way to load it and a way to
tell whether it is loaded already (by anyone: a student's click loads it too). `Warmup.start`
loads a list of needs, in order, in one daemon thread; `state` reports each one as ready,
loading, queued, failed or cold (not asked for), which the lesson bar shows per step.
Failures are logged and reported, never raised: the tab shows its own message when used.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

READY, LOADING, QUEUED, FAILED, COLD = "ready", "loading", "queued", "failed", "cold"


@dataclass(frozen=True)
class Need:
    key: str
    label: str  # what it is, for people: "SmolLM2-135M-Instruct", "the sample-corpus index"
    load: Callable[[], object]
    loaded: Callable[[], bool]


class Warmup:
    """The needs the app knows, and the background loading of some of them. Thread-safe."""

    def __init__(self, needs: Iterable[Need]):
        self.needs = {need.key: need for need in needs}
        self._lock = threading.Lock()
        self._queued: list[str] = []
        self._current: str | None = None
        self._failed: dict[str, str] = {}
        self.seconds: dict[str, float] = {}  # how long each need took to load here

    def state(self, key: str) -> str:
        need = self.needs.get(key)
        if need is None:
            return FAILED
        if need.loaded():
            return READY
        with self._lock:
            if key == self._current:
                return LOADING
            if key in self._queued:
                return QUEUED
            if key in self._failed:
                return FAILED
        return COLD

    def all_ready(self, keys: Iterable[str]) -> bool:
        return all(self.state(key) == READY for key in keys)

    def unknown(self, keys: Iterable[str]) -> list[str]:
        return [key for key in keys if key not in self.needs]

    def start(self, keys: Iterable[str]) -> threading.Thread | None:
        """Load `keys` (known, not yet loaded or queued) in order in a background thread."""
        keys = [k for k in dict.fromkeys(keys) if k in self.needs and not self.needs[k].loaded()]
        with self._lock:
            keys = [k for k in keys if k not in self._queued and k != self._current]
            if not keys:
                return None
            self._queued += keys
        thread = threading.Thread(target=self._run, args=(keys,), name="lesson-warmup", daemon=True)
        thread.start()
        return thread

    def _run(self, keys: list[str]) -> None:
        for key in keys:
            need = self.needs[key]
            with self._lock:
                self._queued.remove(key)
                self._current = key
                self._failed.pop(key, None)
            start = time.perf_counter()
            try:
                need.load()
                self.seconds[key] = time.perf_counter() - start
                log.info("Warm-up: %s ready in %.1f s", need.label, self.seconds[key])
            except Exception as exc:  # the tab shows its own message when it is used
                log.warning("Warm-up of %s failed", need.label, exc_info=True)
                with self._lock:
                    self._failed[key] = f"{type(exc).__name__}: {exc}"
            finally:
                with self._lock:
                    self._current = None

    def failure(self, key: str) -> str | None:
        with self._lock:
            return self._failed.get(key)

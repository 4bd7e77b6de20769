"""What a long-running server does between requests, so its memory returns to where it started.

A public Space or a class of thirty opens and closes sessions all day. Every `every_s` seconds
a daemon thread:
- deletes the document collections of sessions unseen for `session_ttl_s` (API clients never
  send the browser's unload, so this is the only way their collections end);
- reopens the embedded chromadb client if collections were deleted, since chromadb keeps a
  deleted collection's index and file handles until its client closes (chroma-core/chroma#3296);
- hands freed heap back to the operating system. glibc keeps memory that request threads
  freed in per-thread arenas; `malloc_trim(0)` returns it, so RSS after a burst of sessions
  falls back instead of staying at the burst's high-water mark.

`limit_heap_arenas` goes with it, once at start-up: glibc gives threads up to 8 arenas per
core, and memory freed in many half-used arenas is fragmented beyond what a trim can return.
With glibc's default, bench/load.py measured RSS 170-310 MB higher after four ended bursts of
16 sessions; with 2 arenas it stays within 20-95 MB of its warm-up level.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from functools import cache

log = logging.getLogger(__name__)


@cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") else None  # glibc only (not musl, not macOS)
    except OSError:
        return None


M_ARENA_MAX = -8  # mallopt parameter, from glibc's <malloc.h>


def limit_heap_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas (like MALLOC_ARENA_MAX). Call before threads start; 0 keeps glibc's
    default. True if the cap was set."""
    libc = _libc()
    if libc is None or count <= 0:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, count))


def release_free_heap() -> bool:
    """Return freed heap pages to the OS (glibc). True if the C library could do it."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class Housekeeper:
    """Sweeps expired sessions, recycles the embedded store, trims the heap; run_once() or start()."""

    def __init__(self, store, every_s: float):
        self.store, self.every_s = store, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict:
        report = {"expired_sessions": 0, "store_reopened": False, "heap_trimmed": False}
        try:
            report["expired_sessions"] = len(self.store.sweep())
            report["store_reopened"] = self.store.recycle_if_idle()
        except Exception:  # never let a housekeeping hiccup kill the thread; the next round retries
            log.exception("Document store housekeeping failed")
        report["heap_trimmed"] = release_free_heap()
        return report

    def start(self) -> Housekeeper:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="genai-lab-housekeeping", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.run_once()

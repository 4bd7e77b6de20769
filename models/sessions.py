"""Which browser sessions are alive, so a session's data outlives a Wi-Fi blip but not its end.

A session is *live* while one of its heartbeat connections is open (the page holds one as long
as it is open); otherwise it was last heard from at its latest request or heartbeat. Its data
may be deleted only once it has been silent for:
- `grace_s` after its heartbeat ended (the tab closed, or the network dropped and did not come
  back), so a client that reconnects within the grace period finds everything where it was;
- `ttl_s` if it never held a heartbeat here (a script, or a session served by another replica),
  counted from the latest time any replica wrote down that it was seen.

Plain Python and thread-safe: the HTTP door (tabs/door.py) reports connections and requests,
the document store's sweep asks `expired()`. One instance per app (no module-level state).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRACKED = 50_000  # session hashes remembered at once (an attacker can mint any number)


@dataclass
class _Entry:
    open: int = 0  # heartbeat connections open now
    last: float = 0.0  # latest request, heartbeat start or heartbeat end
    had_heartbeat: bool = False


class SessionActivity:
    """Open heartbeat connections and last activity per session hash."""

    def __init__(self, clock: Callable[[], float] = time.time, max_tracked: int = MAX_TRACKED):
        self._clock = clock
        self._max = max_tracked
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _entry(self, session: str) -> _Entry:
        entry = self._entries.get(session)
        if entry is None:
            entry = self._entries[session] = _Entry()
            self._evict()
        self._entries.move_to_end(session)
        return entry

    def _evict(self) -> None:
        """Forget the least recently heard-from sessions without an open connection beyond the cap."""
        if len(self._entries) <= self._max:
            return
        for session in list(self._entries):
            if len(self._entries) <= self._max:
                break
            if not self._entries[session].open:
                del self._entries[session]

    def seen(self, session: str) -> None:
        """A request from this session."""
        if session:
            with self._lock:
                self._entry(session).last = self._clock()

    def opened(self, session: str) -> int:
        """A heartbeat connection opened; returns how many were already open for the session."""
        with self._lock:
            entry = self._entry(session)
            before, entry.open, entry.had_heartbeat, entry.last = entry.open, entry.open + 1, True, self._clock()
            return before

    def closed(self, session: str) -> None:
        """A heartbeat connection ended (tab closed, network dropped, or a second connection left)."""
        with self._lock:
            entry = self._entry(session)
            entry.open, entry.last = max(0, entry.open - 1), self._clock()

    def ended(self, session: str) -> None:
        """gradio's unload for this session: its heartbeat ended. The door already counts the
        connections; this only makes sure the grace period, not the TTL, applies from now."""
        with self._lock:
            entry = self._entry(session)
            entry.had_heartbeat, entry.last = True, self._clock()

    def is_live(self, session: str) -> bool:
        with self._lock:
            entry = self._entries.get(session)
            return bool(entry and entry.open)

    def live_sessions(self) -> list[str]:
        with self._lock:
            return [s for s, e in self._entries.items() if e.open]

    def known(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def expired(self, session: str, stored_last_seen: float, now: float, ttl_s: float, grace_s: float) -> bool:
        """True if the session's data may go: not live, and silent for its grace period (heartbeat
        ended here) or the TTL (never held one here), counting `stored_last_seen` as heard from."""
        with self._lock:
            entry = self._entries.get(session)
            if entry is not None and entry.open:
                return False
            last = max(stored_last_seen, entry.last if entry else 0.0)
            limit = grace_s if entry is not None and entry.had_heartbeat else ttl_s
            return now - last > limit

    def forget(self, older_than_s: float, now: float | None = None) -> int:
        """Drop sessions without a connection that were silent this long; returns how many."""
        now = self._clock() if now is None else now
        with self._lock:
            old = [s for s, e in self._entries.items() if not e.open and now - e.last > older_than_s]
            for session in old:
                del self._entries[session]
            return len(old)

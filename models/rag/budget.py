"""What the document chat may still take in: each session's limits, the class's shared budget and a
quota per client address, checked so that concurrent uploads cannot pass a limit together.

An upload holds its session's write lock (DocumentStore.writing) and takes a `Ticket`; every file
is admitted with `ticket.take(usage)` against the session's documents, everything other uploads
have admitted but not yet stored (`pending`), what all sessions already hold, and how many new
document sessions the client's address started in the last hour. What a file would pass is
refused with a sentence the user can act on, and the other files go on.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

ADDRESS_WINDOW_S = 3600.0


class LimitError(ValueError):
    """A per-session limit, the class's budget or an address quota would be passed."""


@dataclass(frozen=True)
class Usage:
    files: int = 0
    n_bytes: int = 0
    chunks: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.files + other.files, self.n_bytes + other.n_bytes, self.chunks + other.chunks)


def check_session(settings, held: Usage, adding: Usage) -> None:
    """Raise LimitError if `adding` to what a session `held` passes a per-session limit."""
    s, total = settings, held + adding
    if total.files > s.max_files_per_session:
        raise LimitError(f"This session already holds {held.files} file(s); the limit is "
                         f"{s.max_files_per_session}. Delete some documents first.")
    if total.n_bytes > s.max_upload_mb * 1e6:
        raise LimitError(f"This would bring the session to {total.n_bytes / 1e6:.1f} MB; the limit is "
                         f"{s.max_upload_mb:g} MB. Delete some documents first.")
    if total.chunks > s.max_chunks_per_session:
        raise LimitError(f"This would bring the session to {total.chunks} chunks; the limit is "
                         f"{s.max_chunks_per_session}. Use larger chunks or fewer files.")


def check_class(settings, held: Usage, adding: Usage) -> None:
    """Raise LimitError if the class's shared document space cannot take `adding`."""
    s, total = settings, held + adding
    full = (f"The class's document space is full ({held.chunks:,} chunks, {held.n_bytes / 1e6:.0f} MB in use "
            "across all sessions")
    if total.chunks > s.total_chunks:
        raise LimitError(f"{full}; the limit is {s.total_chunks:,} chunks). Try a smaller file, or try again "
                         "when other sessions have ended.")
    if total.n_bytes > s.total_upload_mb * 1e6:
        raise LimitError(f"{full}; the limit is {s.total_upload_mb:g} MB). Try a smaller file, or try again "
                         "when other sessions have ended.")


class Budgets:
    """The class's shared budget and the per-address quota, for one app (held by DocumentStore)."""

    def __init__(self, settings, clock: Callable[[], float] = time.time):
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, Usage] = {}
        self._ids = itertools.count()
        self._starts: dict[str, deque[float]] = {}  # address -> times it started a document session

    def pending(self) -> Usage:
        with self._lock:
            return sum(self._pending.values(), Usage())

    @contextlib.contextmanager
    def ticket(self, held: Usage, class_usage: Callable[[], Usage], address: str = "") -> Iterator[Ticket]:
        """Admit an upload's files one by one; what it admitted counts as pending until it ends."""
        ticket = Ticket(self, next(self._ids), held, class_usage, address)
        try:
            yield ticket
        finally:
            with self._lock:
                self._pending.pop(ticket.id, None)

    def _admit(self, ticket: Ticket, adding: Usage, take: bool = True) -> None:
        with self._lock:
            mine = self._pending.get(ticket.id, Usage())
            check_session(self.settings, ticket.held + mine, adding)
            others = sum((u for i, u in self._pending.items() if i != ticket.id), Usage())
            check_class(self.settings, ticket.class_usage() + others + mine, adding)
            if not take:
                return
            if not ticket.held.files and not mine.files:  # this upload starts a new document session
                self._count_start(ticket.address)
            self._pending[ticket.id] = mine + adding

    def _count_start(self, address: str) -> None:
        limit = self.settings.address_sessions_per_hour
        if not address or limit <= 0:
            return
        now = self._clock()
        starts = self._starts.setdefault(address, deque())
        while starts and now - starts[0] > ADDRESS_WINDOW_S:
            starts.popleft()
        if len(starts) >= limit:
            raise LimitError(f"{len(starts)} document sessions were started from your network in the last hour; "
                             f"the limit is {limit}. Keep using the session you have, or try again later.")
        starts.append(now)
        if len(self._starts) > 10_000:  # forget addresses whose hour is over
            self._starts = {a: d for a, d in self._starts.items() if d and now - d[-1] <= ADDRESS_WINDOW_S}


@dataclass
class Ticket:
    """One upload's admissions (see Budgets.ticket)."""

    budgets: Budgets
    id: int
    held: Usage  # what the session held when the upload started
    class_usage: Callable[[], Usage]  # what all sessions hold now
    address: str

    def take(self, adding: Usage) -> None:
        """Admit one file; LimitError (and nothing taken) if it would pass a limit."""
        self.budgets._admit(self, adding)

    def check(self, adding: Usage) -> None:
        """LimitError if `adding` would pass a limit now; nothing is taken."""
        self.budgets._admit(self, adding, take=False)

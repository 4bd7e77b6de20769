"""Chunks and their MiniLM vectors in chromadb: one collection per browser session.

The store is an embedded PersistentClient under `settings.data_dir/chroma` (telemetry off),
or a Chroma server when `settings.chroma_host` is set (auth, TLS, a time limit on every call and
per-deployment names: models/rag/chroma.py). A session's collection is named from a hash of its
session id (and the deployment), so one session can never address another's chunks: every read,
list and delete goes through `collection_for(session_id)`. The bundled sample corpus lives in
one shared collection that no session operation writes to. `sweep()` deletes the collections of
sessions that ended: silent for `session_grace_s` after their heartbeat dropped, or for
`session_ttl_s` if they never held one here (models/sessions.py decides); a session whose page
is open is never swept, however long it stays idle. Reading a session that never uploaded
anything creates nothing.

Every write of one session (an upload, a delete, a reset) holds that session's write lock
(`writing`), so two uploads at once cannot together pass its limits; what a session may still
take in is decided by models/rag/budget.py. A document is searched only once all its chunks are
stored: one whose ingestion was cut short is listed as incomplete (so it can be deleted), never
searched, and replaced when it is uploaded again.

The store decides what a search may read (`searchable`: the session's complete documents and the
sample corpus, from its chunk listing, models/rag/listing.py) and holds the session's BM25 indexes
(`keywords`); the ranking itself, dense or hybrid, is models/rag/retrieval.py's.

Embedded chromadb (1.5) keeps a deleted collection's HNSW index and its file handles until the
client is closed (chroma-core/chroma#3296): a server that creates and deletes one collection
per visitor would run out of memory and file descriptors. So deletions are counted, and
`recycle_if_idle()` closes and reopens the embedded client when no store call is in flight.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from chromadb.errors import NotFoundError

from models.rag import retrieval
from models.rag.budget import Budgets, LimitError, Usage, check_session
from models.rag.chroma import (
    SESSION_PREFIX,
    MiniLMEmbedding,
    StoreUnavailable,
    make_client,
    owns_sample,
    owns_session,
    sample_collection_name,
    session_collection_name,
)
from models.rag.chunking import Chunk
from models.rag.hits import Hit
from models.rag.keyword import KeywordIndex, KeywordIndexCache
from models.rag.listing import EMPTY, DocumentInfo, Listing, ListingMemory
from models.sessions import SessionActivity
from models.similarity import embed

log = logging.getLogger(__name__)
_TOUCH_EVERY_S = 30.0  # how often a session's last_seen is written back to the store
WRITE_WAIT_S = 60.0  # how long a write waits for another write of the same session
__all__ = ["SESSION_PREFIX", "DocumentStore", "LimitError", "StoreUnavailable", "make_client",
           "session_collection_name"]


def _guarded(method):
    """Run a DocumentStore method as a call in flight (see DocumentStore.recycle_if_idle)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._in_use():
            return method(self, *args, **kwargs)
    return wrapper


class DocumentStore:
    """Per-session collections plus one shared sample collection, with per-session limits."""

    def __init__(self, settings, encoder_factory: Callable[[], Any], client=None,
                 activity: SessionActivity | None = None):
        self.settings = settings
        self._encoder_factory = encoder_factory
        self._client = client
        self.activity = activity or SessionActivity()  # open pages and requests, fed by the HTTP door
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}
        self._handles: dict[str, Any] = {}  # open collections, so a search is one round trip
        self.sample_name: str | None = None
        self._idle = threading.Condition()  # guards _calls_in_flight; recycling needs it at zero
        self._calls_in_flight = 0
        self.deleted_since_recycle = 0
        self.budgets = Budgets(settings)
        self._write_locks: dict[str, threading.RLock] = {}
        self.keywords = KeywordIndexCache()  # BM25 indexes of the sessions searched lately
        self.listings = ListingMemory()  # each session's chunk listing, while its chunk count stays the same

    def name_of(self, session_id: str) -> str:
        """The session's collection name in this deployment."""
        return session_collection_name(session_id, self.settings.deployment)

    @contextlib.contextmanager
    def writing(self, session_id: str, wait_s: float = WRITE_WAIT_S) -> Iterator[None]:
        """Hold this session's write lock (re-entrant): its writes run one at a time."""
        name = self.name_of(session_id)
        with self._lock:
            lock = self._write_locks.setdefault(name, threading.RLock())
        if not lock.acquire(timeout=wait_s):
            raise LimitError("Another upload is still being indexed in this session; try again when it has finished.")
        try:
            yield
        finally:
            lock.release()

    def _try_write_lock(self, name: str) -> threading.RLock | None:
        """The session's write lock if nobody holds it (the sweep never deletes under a write)."""
        with self._lock:
            lock = self._write_locks.setdefault(name, threading.RLock())
        return lock if lock.acquire(blocking=False) else None

    @contextlib.contextmanager
    def _in_use(self) -> Iterator[None]:
        """Marks a store call in flight, so the client is never closed under it (calls may nest)."""
        with self._idle:
            self._calls_in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._calls_in_flight -= 1

    def recycle_if_idle(self) -> bool:
        """Close and reopen the embedded client if collections were deleted and no call is in
        flight, releasing what chromadb holds for deleted collections. True if it recycled."""
        if self.settings.chroma_host or not self.deleted_since_recycle:
            return False  # a Chroma server manages its own memory
        with self._idle:  # new calls wait here while the client is swapped
            if self._calls_in_flight:
                return False
            with self._lock:
                old, self._client, self._handles, self.sample_name = self._client, None, {}, None
                self.listings.clear()
                self.deleted_since_recycle = 0
            if old is not None:
                old.close()
        log.info("Reopened the embedded document store to release deleted collections")
        return True

    @property
    def client(self):
        with self._lock:
            if self._client is not None and self._store_deleted():
                # Someone deleted the data dir under the running app: start a fresh store there.
                from chromadb.api.client import SharedSystemClient

                SharedSystemClient.clear_system_cache()  # chromadb reuses one system per path
                self._client, self._handles, self.sample_name = None, {}, None
                self.listings.clear()
            if self._client is None:
                self._client = make_client(self.settings)
            return self._client

    def _store_deleted(self) -> bool:
        return not self.settings.chroma_host and not (self.settings.data_dir / "chroma" / "chroma.sqlite3").exists()

    @property
    def embedding(self) -> MiniLMEmbedding:
        return MiniLMEmbedding(self._encoder_factory())

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        encoder = self._encoder_factory()
        return embed(encoder, texts, batch_size)

    def _open(self, name: str, metadata: dict | None = None):
        client = self.client  # first, so a deleted store drops its stale handles
        handle = self._handles.get(name)
        if handle is None:
            handle = client.get_or_create_collection(
                name, metadata=metadata, embedding_function=self.embedding,
                configuration={"hnsw": {"space": "cosine"}})
            self._handles[name] = handle
        return handle

    def _delete(self, name: str) -> None:
        self._handles.pop(name, None)
        self._seen.pop(name, None)
        self._forget_chunks(name)
        self.client.delete_collection(name)
        self.deleted_since_recycle += 1

    @staticmethod
    def _write_meta(collection, **changes) -> None:
        """Update some of a collection's metadata (chromadb's modify replaces all of it)."""
        collection.modify(metadata={**(collection.metadata or {}), **changes})

    def _existing(self, session_id: str):
        """This session's collection, or None if it never stored anything (nothing is created)."""
        name = self.name_of(session_id)
        if name in self._handles:
            return self.collection_for(session_id)
        client = self.client  # a server that refuses us (auth, TLS) or is gone says so: that is no "empty session"
        try:
            client.get_collection(name, embedding_function=self.embedding)
        except NotFoundError:
            return None
        return self.collection_for(session_id)

    # ---- sessions ------------------------------------------------------------------------
    def collection_for(self, session_id: str):
        name = self.name_of(session_id)
        now = time.time()
        collection = self._open(name, {"last_seen": now})
        if now - self._seen.get(name, 0.0) > _TOUCH_EVERY_S:
            self._seen[name] = now
            try:
                self._write_meta(collection, last_seen=now)
            except Exception:  # removed behind our back (another app process swept it): reopen
                self._handles.pop(name, None)
                collection = self._open(name, {"last_seen": now})
        return collection

    @_guarded
    def drop_session(self, session_id: str) -> bool:
        """Delete a session's collection (reset). True if there was one."""
        with self.writing(session_id):
            try:
                self._delete(self.name_of(session_id))
                return True
            except NotFoundError:
                return False

    @_guarded
    def sweep(self, now: float | None = None) -> list[str]:
        """Delete the collections of sessions that ended (see models/sessions.py); returns their names.

        A session whose page is open here gets its `last_seen` written back instead, so the sweep
        of another replica sharing the Chroma server sees it alive."""
        now = time.time() if now is None else now
        s, activity = self.settings, self.activity
        sessions = {self.name_of(session): session for session in activity.known()}
        removed = []
        for collection in self.client.list_collections():
            name = collection.name
            if not owns_session(name, s.deployment):  # never another deployment's sessions
                continue
            stored = max(float((collection.metadata or {}).get("last_seen", 0.0)), self._seen.get(name, 0.0))
            session = sessions.get(name)
            if session is not None and activity.is_live(session):
                self.collection_for(session)  # refreshes last_seen at most every _TOUCH_EVERY_S
                continue
            if session is None:
                expired = now - stored > s.session_ttl_s
            else:
                expired = activity.expired(session, stored, now, s.session_ttl_s, s.session_grace_s)
            lock = self._try_write_lock(name) if expired else None
            if lock is not None:
                try:
                    self._delete(name)
                    removed.append(name)
                finally:
                    lock.release()
                with self._lock:
                    self._write_locks.pop(name, None)
        activity.forget(max(s.session_ttl_s, s.session_grace_s) + 60, now)
        if removed:
            log.info("Removed %d ended document sessions", len(removed))
        return removed

    # ---- documents in a session -----------------------------------------------------------
    def documents(self, session_id: str) -> list[DocumentInfo]:
        """The session's searchable documents (every chunk stored), by file name."""
        return [d for d in self.all_documents(session_id) if d.complete]

    @_guarded
    def all_documents(self, session_id: str) -> list[DocumentInfo]:
        """Every document with chunks in the session, complete or not, by file name."""
        collection = self._existing(session_id)
        return [] if collection is None else self.listings.of(collection).documents

    def usage(self, session_id: str) -> Usage:
        """What the session holds, incomplete documents included."""
        docs = self.all_documents(session_id)
        return Usage(len(docs), sum(d.n_bytes for d in docs), sum(d.chunks for d in docs))

    @_guarded
    def class_usage(self) -> Usage:
        """What all sessions hold, from the totals each session's collection carries."""
        total = Usage()
        for collection in self.client.list_collections():
            if owns_session(collection.name, self.settings.deployment):
                meta = collection.metadata or {}
                total += Usage(int(meta.get("files", 0)), int(meta.get("bytes", 0)), int(meta.get("chunks", 0)))
        return total

    def _record_totals(self, session_id: str) -> None:
        """Write the session's totals into its collection's metadata, for class_usage()."""
        collection = self._existing(session_id)
        if collection is not None:
            held = self.usage(session_id)
            self._write_meta(collection, files=held.files, bytes=held.n_bytes, chunks=held.chunks)

    @_guarded
    def has_document(self, session_id: str, doc_id: str) -> bool:
        collection = self._existing(session_id)
        return collection is not None and bool(collection.get(where={"doc_id": doc_id}, limit=1, include=[])["ids"])

    def check_limits(self, session_id: str, files: int, n_bytes: int, chunks: int) -> None:
        """Raise LimitError if adding this much would pass a per-session limit."""
        check_session(self.settings, self.usage(session_id), Usage(files, n_bytes, chunks))

    def admit(self, session_id: str, address: str = ""):
        """A ticket admitting an upload's files (call while holding `writing(session_id)`)."""
        return self.budgets.ticket(self.usage(session_id), self.class_usage, address)

    @_guarded
    def add(self, session_id: str, chunks: list[Chunk], embeddings: np.ndarray, kind: str, n_bytes: int,
            batch: int = 1000) -> None:
        extra = {"kind": kind, "bytes": n_bytes, "doc_chunks": len(chunks)}
        with self.writing(session_id):
            self._add(self.collection_for(session_id), chunks, embeddings, extra, batch)
            self._forget_chunks(self.name_of(session_id))
            self._record_totals(session_id)

    @staticmethod
    def _add(collection, chunks: list[Chunk], embeddings: np.ndarray, extra: dict, batch: int = 1000) -> None:
        for i in range(0, len(chunks), batch):
            part = chunks[i:i + batch]
            # upsert: re-adding a document after an interrupted ingestion overwrites its partial chunks
            collection.upsert(ids=[c.id for c in part], documents=[c.text for c in part],
                           metadatas=[{**c.metadata(), **extra} for c in part],
                           embeddings=np.asarray(embeddings[i:i + batch], dtype=np.float32))

    @_guarded
    def delete_document(self, session_id: str, doc_id: str) -> int:
        """Delete one document's chunks (complete or not) from this session only; returns how many."""
        collection = self._existing(session_id)
        if collection is None:
            return 0
        with self.writing(session_id):
            ids = collection.get(where={"doc_id": str(doc_id)}, include=[])["ids"]
            if ids:
                collection.delete(ids=ids)
                self._forget_chunks(collection.name)
                self._record_totals(session_id)
        return len(ids)

    # ---- the shared sample corpus -------------------------------------------------------------
    @_guarded
    def ensure_sample(self, fingerprint: str, build: Callable[[], tuple[list[Chunk], np.ndarray]]) -> str:
        """Create the shared sample collection once per corpus/chunking fingerprint."""
        name = sample_collection_name(fingerprint, self.settings.deployment)
        with self._lock:
            if self.sample_name == name:
                return name
        collection = self._open(name, {"shared": True})
        if not (collection.metadata or {}).get("complete"):  # new, or a build that was interrupted
            chunks, embeddings = build()
            self._add(collection, chunks, embeddings, {"kind": "markdown", "bytes": 0})
            self._write_meta(collection, shared=True, complete=True)
        for other in self.client.list_collections():  # older versions of the corpus
            if owns_sample(other.name, self.settings.deployment) and other.name != name:
                self._delete(other.name)
        self.sample_name = name
        return name

    # ---- retrieval (models/rag/retrieval.py) ---------------------------------------------------
    @_guarded
    def search(self, session_id: str, query: str, k: int = 4, **options) -> list[Hit]:
        """Top-k chunks of this session (and the sample corpus), best first: retrieval.search."""
        return retrieval.search(self, session_id, query, k, **options)

    @_guarded
    def keyword_index(self, session_id: str, include_sample: bool = True) -> KeywordIndex:
        """The BM25 index search(hybrid=True) uses for this session: retrieval.keyword_index."""
        return retrieval.keyword_index(self, session_id, include_sample)

    def searchable(self, session_id: str, include_sample: bool) -> tuple[Listing, list]:
        """What a search of this session may read: the session's chunk listing, and the
        (collection, shared, where) to query -- the session's own (complete documents only) and
        the sample corpus."""
        own = self._existing(session_id)
        listing = self.listings.of(own) if own is not None else EMPTY
        collections = [(own, False, {"doc_id": {"$in": listing.complete}})] if listing.complete else []
        if include_sample and self.sample_name:
            collections.append((self._open(self.sample_name), True, None))
        return listing, collections

    def _forget_chunks(self, name: str) -> None:
        """After a write to a session's chunks: its listing and keyword index are built again."""
        self.listings.forget(name)
        self.keywords.invalidate(name)

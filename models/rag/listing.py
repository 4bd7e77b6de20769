"""A session's chunk listing: the documents its chunks make up, which of them a search may read,
and a memory of it while the collection's chunk count stays the same.

Every chunk's metadata names its document (doc_id, source, kind, bytes, page) and how many chunks
that document announced (doc_chunks). A document with fewer chunks stored than it announced was
cut short (a process killed between two write batches): it is listed, so it can be deleted, but
never searched, and it is replaced when uploaded again.

Listing 5,000 chunks' metadata takes about 190 ms, a collection's count about a millisecond. So
`ListingMemory` keeps each collection's listing, with what searches derive from it (the searched
chunk ids and their fingerprint for the keyword index cache), until this process writes to the
collection (`forget`) or its count changes (a write by another app process sharing a Chroma server).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from models.rag.keyword import chunk_fingerprint


@dataclass(frozen=True)
class DocumentInfo:
    doc_id: str
    source: str
    kind: str
    n_bytes: int
    chunks: int
    pages: int
    complete: bool = True  # False: its ingestion was cut short; listed (to delete it) but never searched


@dataclass(frozen=True, eq=False)
class Listing:
    """The ids and metadata of a collection's chunks, and what they say (computed once each)."""

    ids: list[str]
    metadatas: list[dict]

    @cached_property
    def documents(self) -> list[DocumentInfo]:
        """Every document with chunks here, complete or not, by file name."""
        docs: dict[str, dict] = {}
        for meta in self.metadatas:
            entry = docs.setdefault(meta["doc_id"], {"source": meta["source"], "kind": meta.get("kind", ""),
                                                      "n_bytes": int(meta.get("bytes", 0)), "chunks": 0,
                                                      "expected": int(meta.get("doc_chunks", 0)),
                                                      "pages": set()})
            entry["chunks"] += 1
            entry["pages"].add(meta.get("page", 0))
        return [DocumentInfo(doc_id, d["source"], d["kind"], d["n_bytes"], d["chunks"], len(d["pages"]),
                             d["chunks"] >= d["expected"])
                for doc_id, d in sorted(docs.items(), key=lambda kv: kv[1]["source"])]

    @cached_property
    def complete(self) -> list[str]:
        """The doc_ids a search may read: every chunk of them is stored."""
        return [d.doc_id for d in self.documents if d.complete]

    @cached_property
    def searched(self) -> list[tuple[str, int]]:
        """(chunk id, start offset) of the chunks of complete documents."""
        keep = set(self.complete)
        return [(cid, meta.get("start", 0)) for cid, meta in zip(self.ids, self.metadatas, strict=True)
                if meta["doc_id"] in keep]

    @cached_property
    def fingerprint(self) -> str:
        """A digest of the searched chunks, the keyword index cache's key (models/rag/keyword.py)."""
        return chunk_fingerprint([cid for cid, _ in self.searched], [start for _, start in self.searched])


EMPTY = Listing([], [])


class ListingMemory:
    """Each collection's listing, kept while its chunk count stays the same (module docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._listings: dict[str, Listing] = {}

    def of(self, collection) -> Listing:
        count = collection.count()
        with self._lock:
            remembered = self._listings.get(collection.name)
        if remembered is not None and len(remembered.ids) == count:
            return remembered
        got = collection.get(include=["metadatas"])
        listing = Listing(got["ids"], got["metadatas"] or [])
        with self._lock:
            self._listings[collection.name] = listing
        return listing

    def forget(self, name: str) -> None:
        with self._lock:
            self._listings.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self._listings.clear()

"""Ingestion by stage (parse -> split -> embed -> store) with counts and timings per stage.

Each file is judged on its own: a corrupt, empty, image-only, oversized or unsupported file,
or one already in the session (same content hash), is reported and skipped while the others
go in. The whole upload holds the session's write lock, and each file is admitted against the
session's limits, the class's budget and the address quota (models/rag/budget.py) before
anything is embedded; a file that cannot be stored is reported and its partial chunks removed.
The parse stage (`parse_files`) is also what the chunk preview runs, so both judge a file the
same way.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.rag.budget import LimitError, Usage
from models.rag.chunking import Chunk, estimate_chunks, make_splitter, split_document
from models.rag.documents import (
    PARSE_SECONDS,
    DocumentError,
    ParsedDocument,
    content_hash,
    load_document,
    load_folder,
    safe_name,
)
from models.rag.parse_worker import load_isolated
from models.rag.store import DocumentStore

log = logging.getLogger(__name__)
STAGES = ("parse", "split", "embed", "store")
SAMPLE_CHUNKING = {"chunk_size": 128, "chunk_overlap": 16, "unit": "tokens"}
Progress = Callable[[str, float, str], None]  # (stage, fraction of that stage done, description)


@dataclass
class FileResult:
    name: str
    status: str  # "added" | "duplicate" | "error"
    message: str = ""
    kind: str = ""
    pages: int = 0
    chunks: int = 0


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    chunks_added: int = 0

    @property
    def added(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "added"]

    @property
    def problems(self) -> list[FileResult]:
        return [f for f in self.files if f.status != "added"]

    def rows(self) -> list[list]:
        return [[f.name, f.status, f.kind, f.pages, f.chunks, f.message] for f in self.files]

    def timing_text(self) -> str:
        parts = [f"{stage} {self.seconds[stage]:.2f} s" for stage in STAGES if stage in self.seconds]
        rate = self.chunks_added / self.seconds["embed"] if self.seconds.get("embed") else 0
        return " · ".join(parts) + (f" · {rate:.0f} chunks/s embedded" if rate else "")


def _noop(stage: str, fraction: float, desc: str) -> None:
    return None


def max_upload_bytes(settings) -> int:
    """The size limit of one uploaded file, in bytes."""
    return int(settings.max_upload_mb * 1e6)


def parse_files(files: list[tuple[str, bytes]], max_bytes: int, known: Iterable[str] = (),
                progress: Progress = _noop, max_seconds: float = PARSE_SECONDS,
                isolate: bool = True) -> list[tuple[FileResult, ParsedDocument | None]]:
    """The parse stage: each file gets a safe name, then is checked against the content hashes in
    `known` (and earlier files of the batch), the size limit and its parser, within its time
    budget (in a child process killed when the time is up, unless `isolate` is False). A file
    that fails has a FileResult with its message and no document."""
    known, out = set(known), []
    load = load_isolated if isolate else load_document
    for i, (raw_name, data) in enumerate(files):
        name = safe_name(raw_name)  # hostile names (folders, NUL, huge) never reach the page or the store
        progress("parse", i / max(1, len(files)), f"Parsing {name}")
        sha = content_hash(data) if data else ""
        if sha and sha in known:
            out.append((FileResult(name, "duplicate", "Already in this session (same content); skipped."), None))
            continue
        try:
            doc = load(name, data, max_bytes, max_seconds)
        except DocumentError as exc:
            out.append((FileResult(name, "error", str(exc)), None))
            continue
        except Exception as exc:  # never the batch's failure: this file's message, the others go on
            log.exception("Parsing %s failed", name)
            out.append((FileResult(name, "error", f"{name}: the file could not be read ({type(exc).__name__})."),
                        None))
            continue
        known.add(sha)
        out.append((FileResult(name, "added", kind=doc.kind, pages=len(doc.pages)), doc))
    return out


def ingest(store: DocumentStore, session_id: str, files: list[tuple[str, bytes]], splitter,
           progress: Progress = _noop, embed_batch: int = 64, *, address: str = "",
           time_limit_s: float | None = None) -> IngestReport:
    """Add the files to the session's collection; never raises for one bad file. Holds the
    session's write lock throughout, so concurrent uploads of one session cannot pass its limits.
    Past `time_limit_s` (checked between embedding batches) it gives up with LimitError before
    anything is stored."""
    deadline = time.monotonic() + time_limit_s if time_limit_s else None
    with store.writing(session_id):
        return _ingest(store, session_id, files, splitter, progress, embed_batch, address, deadline)


def _ingest(store: DocumentStore, session_id: str, files, splitter, progress: Progress, embed_batch: int,
            address: str, deadline: float | None) -> IngestReport:
    report = IngestReport()
    held = store.all_documents(session_id)
    known = {d.doc_id for d in held if d.complete}
    start = time.perf_counter()
    results = parse_files(files, max_upload_bytes(store.settings), known, progress,
                          store.settings.parse_time_limit_s)
    report.files = [result for result, _ in results]
    parsed = [(doc, result) for result, doc in results if doc is not None]
    for doc_id in {d.doc_id for d in held if not d.complete} & {doc.sha256 for doc, _ in parsed}:
        store.delete_document(session_id, doc_id)  # an interrupted earlier upload of the same file
    report.seconds["parse"] = time.perf_counter() - start
    with store.admit(session_id, address) as ticket:
        batches = _split_and_admit(parsed, splitter, ticket, report, progress)
        _embed_and_store(store, session_id, batches, report, progress, embed_batch, deadline)
    progress("store", 1.0, "Done")
    return report


def _split_and_admit(parsed, splitter, ticket, report: IngestReport, progress: Progress):
    start = time.perf_counter()
    batches: list[tuple[ParsedDocument, FileResult, list[Chunk]]] = []
    for i, (doc, result) in enumerate(parsed):
        progress("split", i / max(1, len(parsed)), f"Splitting {doc.name}")
        try:  # counted before it is split: a file over the limits is refused without the splitter's work
            ticket.check(Usage(1, doc.n_bytes, estimate_chunks(doc, splitter)))
            chunks = split_document(doc, splitter)
            ticket.take(Usage(1, doc.n_bytes, len(chunks)))
        except LimitError as exc:
            result.status, result.message = "error", f"{doc.name}: {exc}"
            continue
        result.chunks = len(chunks)
        batches.append((doc, result, chunks))
    report.seconds["split"] = time.perf_counter() - start
    return batches


def _embed_and_store(store: DocumentStore, session_id: str, batches, report: IngestReport, progress: Progress,
                     embed_batch: int, deadline: float | None = None) -> None:
    texts = [c.text for _, _, chunks in batches for c in chunks]
    start = time.perf_counter()
    vectors = []
    for i in range(0, len(texts), embed_batch):
        if deadline is not None and time.monotonic() > deadline:
            raise LimitError(f"Indexing took longer than this server's time limit ({len(texts) - i:,} of "
                             f"{len(texts):,} chunks not embedded yet), so nothing was stored. Try fewer or "
                             "smaller files at once.")
        progress("embed", i / max(1, len(texts)), f"Embedding chunks {i + 1}-{min(len(texts), i + embed_batch)} "
                                                    f"of {len(texts)}")
        vectors.append(store.embed(texts[i:i + embed_batch], batch_size=embed_batch))
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, 384), dtype=np.float32)
    report.seconds["embed"] = time.perf_counter() - start

    start = time.perf_counter()
    offset = 0
    for i, (doc, result, chunks) in enumerate(batches):
        progress("store", i / max(1, len(batches)), f"Storing {doc.name}")
        own, offset = embeddings[offset:offset + len(chunks)], offset + len(chunks)
        try:
            store.add(session_id, chunks, own, doc.kind, doc.n_bytes)
        except Exception as exc:  # the store failed mid-write: this file is reported, its partial chunks go
            log.exception("Storing %s failed", doc.name)
            result.status, result.chunks = "error", 0
            result.message = f"{doc.name}: could not be stored ({type(exc).__name__}); nothing of it is searched."
            _forget_partial(store, session_id, doc.sha256)
            continue
        report.chunks_added += len(chunks)
    report.seconds["store"] = time.perf_counter() - start


def _forget_partial(store: DocumentStore, session_id: str, doc_id: str) -> None:
    try:
        store.delete_document(session_id, doc_id)
    except Exception:  # still listed as incomplete: never searched, and the user can delete it
        log.exception("Removing the partial chunks of %s failed", doc_id)


def corpus_fingerprint(folder: Path, chunking: dict) -> str:
    digest = hashlib.sha256(repr(sorted(chunking.items())).encode())
    for path in sorted(Path(folder).glob("*.md")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def ensure_sample(store: DocumentStore, folder: Path, tokenizer) -> str:
    """Index the bundled corpus into the shared read-only collection (once per corpus version)."""

    def build():
        splitter = make_splitter(tokenizer=tokenizer, **SAMPLE_CHUNKING)
        chunks = [c for doc in load_folder(folder) for c in split_document(doc, splitter)]
        return chunks, store.embed([c.text for c in chunks])

    return store.ensure_sample(corpus_fingerprint(folder, SAMPLE_CHUNKING), build)

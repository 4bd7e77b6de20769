"""Chat with your documents, the documents half: upload, preview, list, delete and reset, per session.

What it teaches: before any question, a document is parsed, split into chunks (the preview shows
their boundaries and sizes) and embedded into the session's own collection; the table lists what
the session holds, incomplete documents included. Every file goes through the same guards in the
preview and in ingestion: file count and size, parser budgets, and a chunk count estimated before
the splitter runs. tabs/rag.py builds the tab and wires these handlers; they fill its `Outputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from models.rag.chunking import boundary_preview, estimate_chunks, make_splitter, size_stats, split_document
from models.rag.ingest import STAGES, ingest, max_upload_bytes, parse_files
from models.rag.store import DocumentStore
from tabs import rag_views as views
from tabs.common import Services, client_address, user_errors

if TYPE_CHECKING:
    from tabs.rag import Outputs

STAGE_SPAN = {"parse": (0.0, 0.1), "split": (0.1, 0.2), "embed": (0.2, 0.9), "store": (0.9, 1.0)}
# What the upload accepts (checked by gradio for every file, in the browser and on the server); the
# content decides the kind (models/rag/documents.sniff_kind).
UPLOAD_TYPES = [".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt"]


def session_of(request: gr.Request | None) -> str:
    session = getattr(request, "session_hash", None)
    if not session:
        raise gr.Error("No browser session: reload the page.")
    return session


def splitter_for(registry, chunk_size, overlap, unit):
    try:
        return make_splitter(int(chunk_size), int(overlap), unit, registry.sentence_encoder().tokenizer)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None


def read_uploads(settings, files) -> list[tuple[str, bytes]]:
    """(name, bytes) of the chosen files, refused before anything is read if there are more files
    than a session holds or they add up to far more than its size limit; a file over the size
    limit is read only as far as needed to say so."""
    paths = [Path(getattr(f, "name", None) or f) for f in files or []]
    if len(paths) > settings.max_files_per_session:
        raise gr.Error(f"You chose {len(paths)} files; a session holds at most {settings.max_files_per_session}. "
                       "Choose fewer.")
    limit = max_upload_bytes(settings)
    total = sum(path.stat().st_size for path in paths)
    if total > 2 * limit:
        raise gr.Error(f"These files add up to {total / 1e6:.0f} MB; a session holds at most "
                       f"{settings.max_upload_mb:g} MB. Choose fewer or smaller files.")
    out = []
    for path in paths:
        with path.open("rb") as f:
            out.append((path.name, f.read(limit + 1)))
    return out


def documents_update(out: Outputs, store: DocumentStore, session: str) -> dict:
    """The session's document table and the delete picker, refreshed (incomplete documents too,
    marked: they are never searched, and can be deleted)."""
    docs = store.all_documents(session)
    return {out.docs: views.document_rows(docs),
            out.doc_pick: gr.update(choices=views.document_choices(docs), value=None)}


# ---- handlers (plain functions: unit-testable with a fake request) ----------------------------
@user_errors
def preview(services: Services, files, chunk_size, overlap, unit):
    """Chunk counts per file and the boundaries of the first file, before anything is indexed; each
    file goes through the same guards as ingestion: file count and size, parser budgets, and the
    chunk count estimated before the splitter runs."""
    settings = services.settings
    uploads = read_uploads(settings, files)
    if not uploads:
        raise gr.Error("Choose one or more files to preview.")
    splitter = splitter_for(services.registry, chunk_size, overlap, unit)
    tokenizer = services.registry.sentence_encoder().tokenizer
    rows, segments = [], []
    for result, doc in parse_files(uploads, max_upload_bytes(settings), max_seconds=settings.parse_time_limit_s):
        if doc is None:
            rows.append([result.name, 0, 0, 0, result.message])
            continue
        estimate = estimate_chunks(doc, splitter)
        if estimate > settings.max_chunks_per_session:
            rows.append([doc.name, estimate, 0, 0, f"{doc.name}: about {estimate:,} chunks; a session holds at most "
                                                   f"{settings.max_chunks_per_session:,}. Use larger chunks."])
            continue
        chunks = split_document(doc, splitter)
        stats = size_stats(chunks, tokenizer)
        rows.append([doc.name, stats["chunks"], stats["mean"], stats["max"], f"{doc.kind}, {len(doc.pages)} page(s)"])
        if not segments:
            segments = boundary_preview(doc, chunks)
    return rows, segments


@user_errors
def ingest_files(services: Services, out: Outputs, files, chunk_size, overlap, unit, request: gr.Request,
                 progress=gr.Progress()) -> dict:
    """Parse, split, embed and store; one row per file in the report."""
    session = session_of(request)
    uploads = read_uploads(services.settings, files)
    if not uploads:
        raise gr.Error("Choose one or more files to index.")
    splitter = splitter_for(services.registry, chunk_size, overlap, unit)

    def on_stage(stage: str, fraction: float, desc: str) -> None:
        lo, hi = STAGE_SPAN[stage]
        progress(lo + (hi - lo) * fraction, desc=f"{STAGES.index(stage) + 1}/4 {stage}: {desc}")

    report = ingest(services.store, session, uploads, splitter, progress=on_stage,
                    address=client_address(request, services.settings.trusted_proxies),
                    time_limit_s=services.settings.job_time_limit_s)
    for problem in report.problems:
        gr.Warning(problem.message)
    return {out.report: report.rows(), out.status: views.ingest_status(report),
            **documents_update(out, services.store, session)}


@user_errors
def list_documents(store: DocumentStore, out: Outputs, request: gr.Request) -> dict:
    return documents_update(out, store, session_of(request))


@user_errors
def delete_document(store: DocumentStore, out: Outputs, doc_id, request: gr.Request) -> dict:
    session = session_of(request)
    if not doc_id:
        raise gr.Error("Pick a document to delete.")
    removed = store.delete_document(session, doc_id)
    if not removed:
        gr.Warning("That document is not in this session (already deleted?).")
    return {**documents_update(out, store, session), out.doc_note: f"Deleted {removed} chunks." if removed else ""}


@user_errors
def reset_session(store: DocumentStore, out: Outputs, request: gr.Request) -> dict:
    store.drop_session(session_of(request))
    return {out.docs: [], out.doc_pick: gr.update(choices=[], value=None),
            out.doc_note: "Session reset: your documents were removed.", out.chat: [], out.sources: None,
            out.standalone: "", out.plain: ""}


def end_session(store: DocumentStore, request: gr.Request | None) -> None:
    """When a page's heartbeat drops (app.build_demo registers this with demo.unload). That is a
    closed tab or a Wi-Fi blip, so nothing is deleted here: the session's grace period starts, and
    the housekeeper deletes its documents if it stays silent that long (models/sessions.py)."""
    if getattr(request, "session_hash", None):
        store.activity.ended(request.session_hash)

"""Parse one uploaded file in a child process that is killed when its time is up.

The budgets in models/rag/documents.py refuse most slow files early and with a precise
sentence, but a parser can still spend unbounded time inside one step (pypdf extracting one
page whose form is drawn 20,000 times: a 50 KB PDF, hours). So each file is parsed in a child
process (forkserver: a small, single-threaded process that has imported only the parsers, so a
child starts in milliseconds and never inherits the app's threads or models) with an address
space limit, and killed after its time budget plus `grace_s`. Whatever happens in there comes
back as that file's DocumentError.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource

from models.rag.documents import PARSE_SECONDS, DocumentError, ParsedDocument, load_document, safe_name

log = logging.getLogger(__name__)
MEMORY_BYTES = 1_500_000_000  # a child's address space (text of a 20 MB file, pypdf's 75 MB stream limit)
GRACE_S = 5.0


def _binary_format(data: bytes) -> bool:
    """PDF or ZIP (DOCX) by their first bytes, as documents.sniff_kind decides."""
    return data[:2048].lstrip()[:5] == b"%PDF-" or data[:4] == b"PK\x03\x04"


def _context():
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["models.rag.documents", "pypdf"])  # imported once, not per file
        return context
    return multiprocessing.get_context("spawn")


def _child(conn, name: str, data: bytes, max_bytes: int | None, max_seconds: float, memory_bytes: int) -> None:
    try:
        if memory_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        conn.send(("ok", load_document(name, data, max_bytes, max_seconds)))
    except DocumentError as exc:
        conn.send(("error", str(exc)))
    except BaseException as exc:  # load_document turns parser failures into DocumentError; this is a last line
        conn.send(("error", f"{safe_name(name)}: the file could not be read ({type(exc).__name__})."))
    finally:
        conn.close()


def load_isolated(name: str, data: bytes, max_bytes: int | None = None, max_seconds: float = PARSE_SECONDS,
                  grace_s: float = GRACE_S, memory_bytes: int = MEMORY_BYTES) -> ParsedDocument:
    """load_document in a child process, killed after `max_seconds + grace_s`; DocumentError on any failure.
    Text, Markdown and HTML are read here: their parsers are linear in the (size-limited) input."""
    if not _binary_format(data):
        return load_document(name, data, max_bytes, max_seconds)
    shown = safe_name(name)
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, name, data, max_bytes, max_seconds, memory_bytes),
                            name="genai-lab-parse", daemon=True)
    try:
        child.start()
    except OSError:  # no processes allowed here: parse in-process, with the cooperative budgets only
        log.warning("Could not start a parsing process; parsing %s in the app's process", shown, exc_info=True)
        return load_document(name, data, max_bytes, max_seconds)
    sender.close()
    try:
        if not receiver.poll(max_seconds + grace_s):
            raise DocumentError(f"{shown}: reading the file took longer than {max_seconds:g} s, so it was stopped. "
                                "It may be built to be slow to read; export it again, or split it.")
        status, value = receiver.recv()
    except EOFError:  # the child died without a word: killed for memory, or crashed in native code
        raise DocumentError(f"{shown}: reading the file needed more memory than this server gives one file.") from None
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(timeout=5)
    if status == "ok":
        return value
    raise DocumentError(value)

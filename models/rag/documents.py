"""Turn uploaded bytes into text pages, judging each file by its content, not its name.

A file's kind comes from its first bytes: `%PDF-` is a PDF, a zip holding
`word/document.xml` is a DOCX, text that decodes as UTF-8 is HTML (if it looks like markup),
Markdown or plain text; anything else is refused. Each problem (corrupt, empty, image-only,
oversized, wrong type, too complex) raises `DocumentError` with a sentence about that one file,
so the caller can report it and carry on with the others; so does any exception a parser
raises (pypdf's LimitReachedError, a RecursionError, ...).

Parsing has a budget per file, so a small file built to be slow is refused in seconds: a time
budget (`max_seconds`, checked between PDF pages and while a DOCX streams), the XML elements of
a DOCX (models/rag/docx_text.py), and the content-stream bytes a PDF's pages would make pypdf
read, counted before any text is extracted (pages that share one huge stream count it each time).
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser

from models.rag.docx_text import TooComplex, docx_text

KINDS = ("pdf", "docx", "html", "markdown", "text")
_HTML_START = re.compile(rb"^\s*(<!doctype\s+html|<html|<head|<body|<!--)", re.IGNORECASE)
_HTML_TAGS = re.compile(r"<(p|div|h[1-6]|body|table|ul|ol|li|span|a|br)\b[^>]*>", re.IGNORECASE)
_MD_HINT = re.compile(r"^(#{1,6} |\* |- |\d+\. |```)", re.MULTILINE)
# Bounds against hostile files: a PDF's page count, a DOCX's unzipped size, a shown name's length.
MAX_PDF_PAGES = 1000
MAX_PDF_CONTENT_BYTES = 25_000_000  # drawing instructions pypdf reads, summed over pages
MAX_PAGE_CONTENT_BYTES = 5_000_000
MAX_DOCX_ELEMENTS = 200_000  # a 300-page report has about 100,000
MAX_UNZIPPED_BYTES = 100_000_000
MAX_NAME_CHARS = 120
PARSE_SECONDS = 20.0  # the default time budget of one file
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DocumentError(ValueError):
    """A file that cannot be indexed; the message names the file and says why."""


@dataclass(frozen=True)
class Page:
    number: int | None  # 1-based page for PDFs, None for formats without pages
    text: str


@dataclass
class ParsedDocument:
    name: str
    kind: str
    sha256: str
    n_bytes: int
    pages: list[Page] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.pages)

    @property
    def n_chars(self) -> int:
        return sum(len(p.text) for p in self.pages)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sniff_kind(name: str, data: bytes) -> str:
    """The document kind from its bytes; raises DocumentError for anything unsupported."""
    head = data[:2048]
    if head.lstrip()[:5] == b"%PDF-":
        return "pdf"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                if "word/document.xml" in zf.namelist():
                    return "docx"
        except zipfile.BadZipFile:
            raise DocumentError(f"{name}: looks like a ZIP/DOCX file but it is corrupt.") from None
        raise DocumentError(f"{name}: is a ZIP archive, not a Word (.docx) document.")
    text = _decode_text(data)
    if text is None:
        raise DocumentError(
            f"{name}: unsupported file type (binary content). Upload PDF, DOCX, HTML, Markdown or text.")
    if _HTML_START.match(data[:512]) or len(_HTML_TAGS.findall(text[:5000])) >= 3:
        return "html"
    if name.lower().endswith((".md", ".markdown")) or _MD_HINT.search(text[:5000]):
        return "markdown"
    return "text"


def _decode_text(data: bytes) -> str | None:
    """UTF-8 (with or without BOM) text without NUL or many control characters, else None."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    sample = text[:4000]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    if "\x00" in sample or controls > max(2, len(sample) // 100):
        return None
    return text


def _content_bytes(page) -> int:
    """Bytes of drawing instructions in a page's content streams (decoded once, then cached)."""
    contents = page.get("/Contents")
    if contents is None:
        return 0
    contents = contents.get_object()
    streams = contents if isinstance(contents, list) else [contents]
    return sum(len(stream.get_object().get_data()) for stream in streams
               if hasattr(stream.get_object(), "get_data"))


def _check_pdf_budget(name: str, reader) -> None:
    n_pages = len(reader.pages)
    if n_pages > MAX_PDF_PAGES:
        raise DocumentError(f"{name}: the PDF has {n_pages} pages; the limit is {MAX_PDF_PAGES}. "
                            "Split it into smaller files.")
    total = 0
    for i, page in enumerate(reader.pages):
        size = _content_bytes(page)
        total += size
        if size > MAX_PAGE_CONTENT_BYTES or total > MAX_PDF_CONTENT_BYTES:
            raise DocumentError(f"{name}: the PDF is too complex to read here (page {i + 1} brings its pages' "
                                f"drawing instructions to {total / 1e6:.0f} MB; the limit is "
                                f"{MAX_PDF_CONTENT_BYTES / 1e6:.0f} MB, {MAX_PAGE_CONTENT_BYTES / 1e6:.0f} MB "
                                "a page). Export it again, or split it.")


def _parse_pdf(name: str, data: bytes, max_seconds: float = PARSE_SECONDS) -> list[Page]:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    deadline = time.monotonic() + max_seconds
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{name}: the PDF is password-protected.")
        _check_pdf_budget(name, reader)
        n_pages, pages = len(reader.pages), []
        for i, page in enumerate(reader.pages):
            if time.monotonic() > deadline:
                raise DocumentError(f"{name}: reading the PDF took longer than {max_seconds:g} s "
                                    f"({i} of {n_pages} pages read). Export it again, or split it.")
            pages.append(Page(i + 1, _tidy(page.extract_text() or "")))
    except DocumentError:
        raise
    except LimitReachedError:
        raise DocumentError(f"{name}: the PDF is too large or too complex to read here (one of its "
                            "streams passes pypdf's safety limits).") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError, zipfile.BadZipFile) as exc:
        raise DocumentError(f"{name}: the PDF is corrupt or truncated ({type(exc).__name__}).") from None
    if n_pages == 0:
        raise DocumentError(f"{name}: the PDF has no pages.")
    pages = [p for p in pages if p.text]
    if not pages:
        raise DocumentError(
            f"{name}: the PDF has {n_pages} page(s) but no text layer (scanned or image-only?). "
            "Run OCR on it first.")
    return pages


def _parse_docx(name: str, data: bytes, max_seconds: float = PARSE_SECONDS) -> list[Page]:
    from lxml import etree

    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # refuse a zip bomb before anything inflates it
        unzipped = sum(info.file_size for info in zf.infolist())
    if unzipped > MAX_UNZIPPED_BYTES:
        raise DocumentError(f"{name}: the Word document would unpack to {unzipped / 1e6:.0f} MB; "
                            f"the limit is {MAX_UNZIPPED_BYTES / 1e6:.0f} MB.")
    try:
        text = docx_text(data, MAX_DOCX_ELEMENTS, max_seconds)
    except TooComplex as exc:
        raise DocumentError(f"{name}: the Word document is too complex to read here ({exc}).") from None
    except (etree.XMLSyntaxError, KeyError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DocumentError(f"{name}: the Word document is corrupt ({type(exc).__name__}).") from None
    return [Page(None, _tidy(text))]


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page: scripts/styles skipped, block elements become line breaks."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
              "article", "header", "footer", "pre", "blockquote", "table", "ul", "ol", "title"}
    SKIP = {"script", "style", "noscript", "template", "svg"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip_depth += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip_depth:
            self.parts.append(data)


def _parse_html(text: str) -> list[Page]:
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return [Page(None, _tidy("".join(parser.parts)))]


def _tidy(text: str) -> str:
    """Collapse runs of spaces and blank lines (PDF and HTML extraction leave many)."""
    text = re.sub(r"[ \t\u00a0]+", " ", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def safe_name(name: str | None) -> str:
    """A file name fit to show and store: no folders, no control characters, bounded length."""
    name = _CONTROL.sub("", re.split(r"[\\/]", name or "")[-1]).strip().strip(".") or "unnamed file"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and len(ext) <= 10 else ""
        name = name[: MAX_NAME_CHARS - len(ext) - 2] + "…" + ("." + ext if ext else "")
    return name


def load_document(name: str, data: bytes, max_bytes: int | None = None,
                  max_seconds: float = PARSE_SECONDS) -> ParsedDocument:
    """Validate and parse one file within its budget. Raises DocumentError with a message about
    this file, whatever went wrong inside a parser."""
    name = safe_name(name)
    if not data:
        raise DocumentError(f"{name}: the file is empty.")
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentError(
            f"{name}: {len(data) / 1e6:.1f} MB is over the {max_bytes / 1e6:.1f} MB limit per session.")
    try:
        kind = sniff_kind(name, data)
        pages = _parse(name, kind, data, max_seconds)
    except DocumentError:
        raise
    except RecursionError:
        raise DocumentError(f"{name}: the file is nested too deeply to read here.") from None
    except MemoryError:
        raise DocumentError(f"{name}: the file needs more memory to read than this server gives it.") from None
    except Exception as exc:  # a parser's own failure is this file's problem, never the batch's
        raise DocumentError(f"{name}: the file could not be read ({type(exc).__name__}).") from None
    pages = [p for p in pages if p.text]
    if not pages:
        raise DocumentError(f"{name}: no text found in this {kind.upper()} file (it is empty).")
    return ParsedDocument(name=name, kind=kind, sha256=content_hash(data), n_bytes=len(data), pages=pages)


def _parse(name: str, kind: str, data: bytes, max_seconds: float) -> list[Page]:
    if kind == "pdf":
        return _parse_pdf(name, data, max_seconds)
    if kind == "docx":
        return _parse_docx(name, data, max_seconds)
    if kind == "html":
        return _parse_html(_decode_text(data) or "")
    return [Page(None, _tidy(_decode_text(data) or ""))]


def load_folder(folder, pattern: str = "*.md") -> list[ParsedDocument]:
    """Every matching file of a folder (sorted by name), e.g. the bundled sample corpus."""
    from pathlib import Path

    return [load_document(path.name, path.read_bytes()) for path in sorted(Path(folder).glob(pattern))]


def text_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one page per string (Helvetica, one line per text line).

    Used by the tests and the benchmark to build PDFs without a PDF-writing dependency.
    """
    def esc(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               ("<< /Type /Pages /Kids [" + " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
                + f"] /Count {n} >>").encode(),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, text in enumerate(pages):
        lines = "".join(f"({esc(line)}) Tj T* " for line in text.splitlines())
        stream = f"BT /F1 10 Tf 12 TL 40 800 Td {lines}ET".encode("latin-1", "replace")
        objects.append((f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R "
                        f">> >> /Contents {5 + 2 * i} 0 R >>").encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    return pdf_from_objects(objects)


def pdf_from_objects(objects: list[bytes]) -> bytes:
    """A PDF file from numbered object bodies (object 1 is the catalog), with its cross-reference table."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)

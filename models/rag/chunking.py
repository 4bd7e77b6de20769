"""Split parsed documents into overlapping chunks with langchain-text-splitters.

Sizes are counted in tokens of the embedding model's own tokenizer (what the encoder really
sees: MiniLM truncates at 256 word pieces) or in characters. Each page is split on its own so
a chunk keeps the page it came from; `start` is its character offset in that page, which the
preview uses to colour chunk boundaries and overlaps.

Counting comes before splitting: `estimate_chunks` gives, in one linear pass, a number of chunks
the split cannot come in under, so a file that would pass the chunk limit is refused before the
splitter runs. (A run of text without spaces is split character by character, each measured on
its own: 2 MB of it took minutes. Single characters' lengths are cached, which makes that pass
linear too.)
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from models.rag.documents import ParsedDocument

UNITS = ("tokens", "characters")
_LONG_RUN = re.compile(r"\S{256,}")  # split character by character, each character at least one token


class MeasuredSplitter(RecursiveCharacterTextSplitter):
    """langchain's recursive splitter that also says how it measures and how many chunks a text needs."""

    def __init__(self, measure, chunk_size: int, chunk_overlap: int, unit: str):
        cached = functools.lru_cache(maxsize=8192)(measure)
        super().__init__(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                         length_function=lambda text: cached(text) if len(text) <= 4 else measure(text))
        self.measure, self.size, self.overlap, self.unit = measure, chunk_size, chunk_overlap, unit

    def estimate_chunks(self, text: str) -> int:
        """A lower bound on the chunks `split_text(text)` makes, in one linear pass."""
        step = max(1, self.size - self.overlap)
        if self.unit == "characters":
            return len(text) // step
        runs = sum(len(run) for run in _LONG_RUN.findall(text))
        return (self.measure(_LONG_RUN.sub(" ", text)) + runs) // step


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    source: str  # file name
    doc_id: str  # content hash of the file
    page: int | None
    index: int  # position in the document
    start: int  # character offset within its page

    def metadata(self) -> dict:
        """Chroma metadata (no None values allowed there)."""
        return {"source": self.source, "doc_id": self.doc_id, "page": self.page or 0,
                "index": self.index, "start": self.start}


def make_splitter(chunk_size: int, chunk_overlap: int, unit: str = "tokens", tokenizer=None) -> MeasuredSplitter:
    """A recursive splitter measuring length in tokens (needs `tokenizer`) or characters."""
    chunk_size, chunk_overlap = int(chunk_size), int(chunk_overlap)
    if chunk_size < 8:
        raise ValueError("Chunk size must be at least 8.")
    if not 0 <= chunk_overlap < chunk_size:
        raise ValueError("Chunk overlap must be at least 0 and smaller than the chunk size.")
    if unit not in UNITS:
        raise ValueError(f"Unit must be one of {UNITS}, not {unit!r}.")
    if unit == "characters":
        return MeasuredSplitter(len, chunk_size, chunk_overlap, unit)
    if tokenizer is None:
        raise ValueError("Token-based chunking needs the encoder's tokenizer.")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return MeasuredSplitter(lambda text: len(tokenizer.tokenize(text)), chunk_size, chunk_overlap, unit)
    # The splitter measures every candidate piece: the Rust tokenizer directly is ~4x faster
    # than tokenizer.tokenize (and doesn't warn about long texts). A copy without the
    # padding/truncation sentence-transformers configures on it, which would make every piece
    # look max_length long.
    backend = copy.deepcopy(backend)
    backend.no_padding()
    backend.no_truncation()
    return MeasuredSplitter(lambda text: len(backend.encode(text, add_special_tokens=False).ids), chunk_size,
                            chunk_overlap, unit)


def estimate_chunks(doc: ParsedDocument, splitter: MeasuredSplitter) -> int:
    """A lower bound on the chunks `split_document(doc, splitter)` makes (see MeasuredSplitter)."""
    return sum(splitter.estimate_chunks(page.text) for page in doc.pages)


def _locate(page: str, text: str, prev_start: int, prev_end: int) -> int:
    """Where a chunk starts in its page. langchain's add_start_index subtracts the overlap in
    *tokens* as if it were characters, which misplaces token-sized chunks; instead take the
    last occurrence that starts after the previous chunk's start and no later than its end
    (the smallest overlap), else the first one after it."""
    start = page.rfind(text, prev_start + 1, prev_end + len(text))
    if start < 0:
        start = page.find(text, prev_end)
    return start if start >= 0 else max(0, page.find(text))


def split_document(doc: ParsedDocument, splitter) -> list[Chunk]:
    chunks: list[Chunk] = []
    for page in doc.pages:
        prev_start, prev_end = -1, 0
        for piece in splitter.split_text(page.text):
            text = piece.strip()
            if not text:
                continue
            start = _locate(page.text, text, prev_start, prev_end)
            prev_start, prev_end = start, start + len(text)
            index = len(chunks)
            chunks.append(Chunk(id=f"{doc.sha256[:20]}-{index}", text=text, source=doc.name,
                                doc_id=doc.sha256, page=page.number, index=index, start=start))
    return chunks


def size_stats(chunks: list[Chunk], tokenizer=None) -> dict:
    """Count, and mean/max length in tokens (with a tokenizer) or characters."""
    if not chunks:
        return {"chunks": 0, "mean": 0, "max": 0}
    if tokenizer is not None:
        lengths = [len(ids) for ids in tokenizer([c.text for c in chunks], add_special_tokens=False)["input_ids"]]
    else:
        lengths = [len(c.text) for c in chunks]
    return {"chunks": len(chunks), "mean": round(sum(lengths) / len(lengths), 1), "max": max(lengths)}


def boundary_preview(doc: ParsedDocument, chunks: list[Chunk], max_chunks: int = 6) -> list[tuple[str, str | None]]:
    """(text, label) segments of the first page for gr.HighlightedText: chunks alternate
    labels "chunk A"/"chunk B", text shared by two neighbouring chunks is labelled "overlap"."""
    if not chunks:
        return []
    page_no = chunks[0].page
    page_text = next(p.text for p in doc.pages if p.number == page_no)
    shown = [c for c in chunks if c.page == page_no][:max_chunks]
    spans = [(c.start, c.start + len(c.text), f"chunk {'AB'[i % 2]}") for i, c in enumerate(shown)]
    cuts = sorted({0} | {p for a, b, _ in spans for p in (a, b)})
    segments: list[tuple[str, str | None]] = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        covering = [label for start, end, label in spans if start <= a and b <= end]
        label = None if not covering else ("overlap" if len(covering) > 1 else covering[0])
        if segments and segments[-1][1] == label:
            segments[-1] = (segments[-1][0] + page_text[a:b], label)
        else:
            segments.append((page_text[a:b], label))
    cursor = cuts[-1]
    if cursor < len(page_text):
        segments.append((page_text[cursor:cursor + 300] + (" …" if len(page_text) > cursor + 300 else ""), None))
    return segments

"""Split parsed documents into overlapping chunks with langchain-text-splitters.

Sizes are counted in tokens of the embedding model's own tokenizer (what the encoder really
sees: MiniLM truncates at 256 word pieces) or in characters. Each page is split on its own so
a chunk keeps the page it came from; `start` is its character offset in that page, which the
preview uses to colour chunk boundaries and overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from models.documents import ParsedDocument

UNITS = ("tokens", "characters")


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


def make_splitter(chunk_size: int, chunk_overlap: int, unit: str = "tokens", tokenizer=None):
    """A RecursiveCharacterTextSplitter measuring length in tokens (needs `tokenizer`) or characters."""
    chunk_size, chunk_overlap = int(chunk_size), int(chunk_overlap)
    if chunk_size < 8:
        raise ValueError("Chunk size must be at least 8.")
    if not 0 <= chunk_overlap < chunk_size:
        raise ValueError("Chunk overlap must be at least 0 and smaller than the chunk size.")
    if unit not in UNITS:
        raise ValueError(f"Unit must be one of {UNITS}, not {unit!r}.")
    kwargs = {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "add_start_index": True}
    if unit == "tokens":
        if tokenizer is None:
            raise ValueError("Token-based chunking needs the encoder's tokenizer.")
        return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(tokenizer, **kwargs)
    return RecursiveCharacterTextSplitter(**kwargs)


def split_document(doc: ParsedDocument, splitter) -> list[Chunk]:
    chunks: list[Chunk] = []
    for page in doc.pages:
        for piece in splitter.create_documents([page.text]):
            text = piece.page_content.strip()
            if not text:
                continue
            index = len(chunks)
            chunks.append(Chunk(id=f"{doc.sha256[:20]}-{index}", text=text, source=doc.name,
                                doc_id=doc.sha256, page=page.number, index=index,
                                start=int(piece.metadata.get("start_index", 0))))
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
    segments: list[tuple[str, str | None]] = []
    cursor = 0
    for i, chunk in enumerate(shown):
        end = chunk.start + len(chunk.text)
        if chunk.start > cursor:  # whitespace the splitter dropped between chunks
            segments.append((page_text[cursor:chunk.start], None))
        if chunk.start < cursor:
            segments.append((page_text[chunk.start:cursor], "overlap"))
        segments.append((page_text[max(cursor, chunk.start):end], f"chunk {'AB'[i % 2]}"))
        cursor = max(cursor, end)
    if cursor < len(page_text):
        segments.append((page_text[cursor:cursor + 300] + (" …" if len(page_text) > cursor + 300 else ""), None))
    return segments

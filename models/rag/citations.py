"""Citations that work with a small model: link each answer sentence to its closest chunk.

A 135M model rarely writes correct [n] markers itself, so they are not trusted: any markers
it wrote are removed, every answer sentence is compared (MiniLM cosine) with every chunk that
was in the prompt, and the sentence gets the marker of the most similar chunk when that
similarity passes `min_score`. In each cited chunk, the sentence closest to the answer
sentences citing it is highlighted. All HTML produced here is escaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from models.rag.store import Hit
from models.similarity import cosine_matrix, sentence_spans, split_sentences

_MODEL_MARKER = re.compile(r"\s*\[(\d+)\]")


@dataclass
class CitedSentence:
    text: str
    source: int | None  # 1-based number of the chunk in the prompt, None when nothing is close
    score: float


@dataclass
class Source:
    number: int
    hit: Hit
    highlight: tuple[int, int] | None = None  # character span in hit.text
    cited_by: list[int] = field(default_factory=list)  # indices of answer sentences


@dataclass
class CitedAnswer:
    text: str  # the answer with [n] markers after the sentences they support
    sentences: list[CitedSentence]
    sources: list[Source]  # every chunk that was in the prompt, in prompt order


def cite(encoder, answer: str, hits: list[Hit], min_score: float = 0.35) -> CitedAnswer:
    clean = _MODEL_MARKER.sub("", answer or "").strip()
    sources = [Source(n, hit) for n, hit in enumerate(hits, 1)]
    spans = sentence_spans(clean)
    sentences = [clean[a:b] for a, b in spans]
    if not sentences or not hits:
        return CitedAnswer(clean, [CitedSentence(s, None, 0.0) for s in sentences], sources)
    chunk_sentences = [split_sentences(h.text) or [h.text] for h in hits]
    flat = [s for group in chunk_sentences for s in group]
    sims = cosine_matrix(encoder, sentences, [h.text for h in hits] + flat)
    to_chunks, to_chunk_sentences = sims[:, :len(hits)], sims[:, len(hits):]
    cited = []
    for i, sentence in enumerate(sentences):
        best = int(to_chunks[i].argmax())
        score = float(to_chunks[i, best])
        number = best + 1 if score >= min_score else None
        cited.append(CitedSentence(sentence, number, score))
        if number:
            sources[best].cited_by.append(i)
    offset = 0
    for source, group in zip(sources, chunk_sentences, strict=True):
        if source.cited_by:
            block = to_chunk_sentences[source.cited_by, offset:offset + len(group)]
            best_sentence = group[int(block.max(axis=0).argmax())]
            start = source.hit.text.find(best_sentence)
            if start >= 0:
                source.highlight = (start, start + len(best_sentence))
        offset += len(group)
    return CitedAnswer(_with_markers(clean, spans, cited), cited, sources)


def _with_markers(text: str, spans: list[tuple[int, int]], cited: list[CitedSentence]) -> str:
    out, cursor = [], 0
    for (_, end), sentence in zip(spans, cited, strict=True):
        out.append(text[cursor:end])
        if sentence.source:
            out.append(f" [{sentence.source}]")
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def _esc(text) -> str:
    import html

    return html.escape(str(text), quote=True)


def sources_html(cited: CitedAnswer, show_uncited: bool = True) -> str:
    """The sources panel: number, file, page, score, chunk text with the matched sentence marked."""
    if not cited.sources:
        return "<div class='rag-sources'><em>No chunks were used.</em></div>"
    items = []
    for src in cited.sources:
        if not src.cited_by and not show_uncited:
            continue
        hit, text = src.hit, src.hit.text
        if src.highlight:
            a, b = src.highlight
            body = f"{_esc(text[:a])}<mark>{_esc(text[a:b])}</mark>{_esc(text[b:])}"
        else:
            body = _esc(text)
        where = _esc(hit.source) + (f", page {hit.page}" if hit.page else "")
        tag = " · sample corpus" if hit.shared else ""
        cited_note = (f"cited by sentence {', '.join(str(i + 1) for i in src.cited_by)}"
                      if src.cited_by else "not cited")
        items.append(
            f"<details class='rag-source' {'open' if src.cited_by else ''}>"
            f"<summary><b>[{src.number}]</b> {where} — score {hit.score:.2f}{tag} — {cited_note}</summary>"
            f"<div class='rag-chunk' style='white-space:pre-wrap'>{body}</div></details>")
    return "<div class='rag-sources'>" + "".join(items) + "</div>"

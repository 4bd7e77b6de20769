"""Citations that work with a small model: link each answer sentence to its closest chunk.

A 135M model rarely writes correct [n] markers itself, so they are not trusted: any markers
it wrote are removed, every answer sentence is compared (MiniLM cosine) with every chunk that
was in the prompt, and the sentence gets the marker of the most similar chunk when that
similarity passes `min_score`. In each cited chunk, the sentence closest to the answer
sentences citing it is highlighted (a character span). Data only: tabs/rag_views.py draws it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from models.rag.hits import Hit
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
    """The answer with a [n] marker after each sentence close enough to the n-th chunk of `hits`."""
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

"""Sentence similarity with the embedding model: which sentence supports which text.

Embeddings are L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import re

import numpy as np

# A sentence ends at . ! ? (optionally followed by quotes/brackets) before whitespace, or at a blank line.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|\n\s*\n")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences, keeping each sentence's own text (no empty pieces)."""
    return [piece.strip() for piece in _SENTENCE_END.split(text or "") if piece and piece.strip()]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each sentence of `text`, in order."""
    spans, cursor = [], 0
    for sentence in split_sentences(text):
        start = text.find(sentence, cursor)
        spans.append((start, start + len(sentence)))
        cursor = start + len(sentence)
    return spans


def embed(encoder, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Unit-length sentence vectors (n, dim) from a SentenceTransformer: every caller's one way in."""
    return np.asarray(encoder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False))


def cosine_matrix(encoder, a: list[str], b: list[str]) -> np.ndarray:
    """Cosine similarity of every text in `a` with every text in `b`, shape (len(a), len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    vectors = embed(encoder, list(a) + list(b))
    return vectors[: len(a)] @ vectors[len(a):].T


def best_match(encoder, query: str, candidates: list[str]) -> tuple[int, float]:
    """Index and cosine of the candidate most similar to `query` (-1, 0.0 when none)."""
    if not candidates:
        return -1, 0.0
    scores = cosine_matrix(encoder, [query], candidates)[0]
    index = int(scores.argmax())
    return index, float(scores[index])

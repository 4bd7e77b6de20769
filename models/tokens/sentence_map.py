"""Sentence embeddings as points: similar meanings lie close.

What it teaches: MiniLM turns each text into one 384-number vector (the same encoder the
document chat searches with). Texts that mean similar things get vectors that point the same
way, so their cosine similarity is high. To see 384 dimensions on a screen, PCA keeps the 2 or
3 directions along which these particular texts differ most; the share of the variance those
directions explain says how faithful the picture is. The similarity matrix is exact; the map
is a projection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.similarity import embed

MAX_TEXTS = 50
MAX_TOKENS = 128  # each text is cut to this many MiniLM tokens before it is embedded
MAX_CHARS = 2_000  # ...and, before the tokenizer sees it, to this many characters
DEFAULT_GROUP = "texts"


@dataclass
class SentenceMap:
    texts: list[str]  # as embedded (after truncation)
    groups: list[str]
    coordinates: np.ndarray  # (n, dims): PCA of the unit vectors
    explained: list[float]  # share of the variance each PCA axis explains
    similarity: np.ndarray  # (n, n) cosine similarity
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"texts": self.texts, "groups": self.groups,
                "coordinates": np.round(self.coordinates, 5).tolist(),
                "explained_variance": [round(v, 5) for v in self.explained],
                "similarity": np.round(self.similarity, 5).tolist(), "notes": list(self.notes)}


def texts_and_groups(block: str) -> tuple[list[str], list[str]]:
    """One text per line; a line `# name` starts a group; blank lines are skipped."""
    texts, groups, group = [], [], DEFAULT_GROUP
    for line in (block or "").splitlines():
        line = line.strip()
        if line.startswith("#"):
            group = line.lstrip("#").strip() or DEFAULT_GROUP
        elif line:
            texts.append(line)
            groups.append(group)
    return texts, groups


def pca(vectors: np.ndarray, dims: int) -> tuple[np.ndarray, list[float]]:
    """Coordinates on the `dims` principal axes and the share of variance of each (signs fixed so
    the largest loading of each axis is positive: the same input always draws the same map)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:dims]
    axes *= np.where(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    coords = centred @ axes.T
    if coords.shape[1] < dims:  # fewer texts than axes: the missing axes carry nothing
        coords = np.pad(coords, ((0, 0), (0, dims - coords.shape[1])))
    variance = singular**2
    total = float(variance.sum()) or 1.0
    explained = [float(v / total) for v in variance[:dims]] + [0.0] * (dims - len(variance[:dims]))
    return coords, explained


def _truncate(tokenizer, text: str) -> tuple[str, bool]:
    """The text cut to its first MAX_TOKENS tokens (at a token's end), and whether it was cut."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    if len(offsets) <= MAX_TOKENS:
        return text, False
    return text[: offsets[MAX_TOKENS - 1][1]], True


def sentence_map(encoder, texts: list[str], groups: list[str] | None = None, dims: int = 2) -> SentenceMap:
    """Embed the texts (unit vectors), project them with PCA, and compute every pair's cosine."""
    if isinstance(texts, str):
        raise ValueError("Pass the texts as a list of strings, one text each.")
    texts, groups = list(texts or []), list(groups or [])
    if len(texts) > MAX_TEXTS:
        raise ValueError(f"The map takes up to {MAX_TEXTS} texts; you gave {len(texts)}.")
    groups += [DEFAULT_GROUP] * (len(texts) - len(groups))
    pairs = [(str(t).strip()[:MAX_CHARS], str(g or DEFAULT_GROUP)[:60]) for t, g in zip(texts, groups, strict=False)]
    pairs = [(t, g) for t, g in pairs if t]
    if len(pairs) < 3:
        raise ValueError("Give at least 3 texts (one per line) to draw a map.")
    if dims not in (2, 3):
        raise ValueError("The map has 2 or 3 dimensions.")
    notes = []
    cut = [_truncate(encoder.tokenizer, t) for t, _ in pairs]
    if any(was_cut for _, was_cut in cut):
        notes.append(f"{sum(c for _, c in cut)} text(s) were cut to their first {MAX_TOKENS} tokens.")
    kept = [t for t, _ in cut]
    vectors = embed(encoder, kept)
    coords, explained = pca(vectors, dims)
    product = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    similarity = np.clip((product + product.T) / 2, -1.0, 1.0)  # exactly symmetric
    np.fill_diagonal(similarity, 1.0)  # a unit vector with itself, without the float32 rounding
    notes.append(f"The {dims} PCA axes keep {sum(explained):.0%} of how these {len(kept)} texts vary "
                 f"in {vectors.shape[1]} dimensions; distances on the map are approximate, the matrix is exact.")
    return SentenceMap(kept, [g for _, g in pairs], coords, explained, similarity, notes)

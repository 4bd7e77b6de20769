"""A retrieved chunk, and how the dense and the keyword (BM25) rankings become one list of them.

`Hit` is what retrieval hands the chain, the citations and the views: the chunk, its cosine to the
question, and its rank in each ranking. `fuse_hits` joins the two rankings with reciprocal rank
fusion (models/rag/keyword.fuse); a chunk only BM25 found is read back from its chromadb
collection for its text and vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.rag.keyword import fuse


@dataclass
class Hit:
    """One retrieved chunk; score is the cosine similarity to the query (1 = same direction)."""

    id: str
    text: str
    source: str
    page: int | None
    score: float
    shared: bool  # True for the bundled sample corpus
    embedding: np.ndarray | None = None
    dense_rank: int | None = None  # rank among the dense candidates (None: not among them)
    keyword_rank: int | None = None  # rank in the BM25 search (None: no query word in it, or keyword search off)
    fused: float | None = None  # reciprocal-rank-fusion share, 1.0 = first in both rankings (None: dense only)


def fuse_hits(dense: list[Hit], keyword: list, query_vec: np.ndarray, collections: list) -> list[Hit]:
    """Dense hits and BM25 hits fused (RRF), best first; a chunk only BM25 found is read from its
    collection (text, metadata and vector, for its cosine)."""
    by_id = {h.id: h for h in dense}
    for collection, shared, _ in collections:
        wanted = [h.id for h in keyword if h.label == collection.name and h.id not in by_id]
        if wanted:
            got = collection.get(ids=wanted, include=["documents", "metadatas", "embeddings"])
            for cid, text, meta, vector in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"],
                                               strict=True):
                vector = np.asarray(vector, dtype=np.float32)
                by_id[cid] = Hit(cid, text, meta["source"], meta.get("page") or None,
                                 float(vector @ query_vec), shared, vector)
    out = []
    for item in fuse([h.id for h in dense], [h.id for h in keyword]):
        hit = by_id.get(item.id)
        if hit is not None:  # a chunk deleted since the index was built is skipped
            hit.keyword_rank, hit.fused = item.keyword_rank, item.share
            out.append(hit)
    return out

"""Searching a session's documents: the dense ranking, BM25 beside it, and MMR for variety.

Search is dense (the chunks' MiniLM vectors, ranked by chromadb), or hybrid: a BM25 keyword index
over the same stored chunks (models/rag/keyword.py) fused with the dense ranking
(models/rag/hits.fuse_hits). The index is built from what the collections hold, so every replica
reading a Chroma server builds the same one; it is cached in the store's `keywords`, an LRU
bounded in entries and chunks, under a fingerprint of the session's searched chunks (taken from
its listing, models/rag/listing.py), so an upload, delete or reset is never searched stale. What a search may read
(the session's complete documents and the sample corpus) is the store's to say
(DocumentStore.searchable); callers go through DocumentStore.search, which marks the call in flight.
"""

from __future__ import annotations

import numpy as np

from models.rag.hits import Hit, fuse_hits
from models.rag.keyword import KeywordIndex
from models.rag.listing import Listing


def search(store, session_id: str, query: str, k: int = 4, *, include_sample: bool = True, mmr: bool = False,
           fetch_k: int = 20, lambda_mult: float = 0.5, hybrid: bool = False) -> list[Hit]:
    """Top-k chunks of this session (and the sample corpus), best first. Hybrid fuses the dense
    ranking with BM25's (reciprocal rank fusion) over `fetch_k` candidates of each; MMR trades
    some relevance for variety among near-duplicate chunks."""
    query_vec = store.embed([query])[0]
    listing, collections = store.searchable(session_id, include_sample)
    n_wanted = max(fetch_k, k) if mmr or hybrid else k
    include = ["documents", "metadatas", "distances"] + (["embeddings"] if mmr else [])
    hits: list[Hit] = []
    for collection, shared, where in collections:
        # chroma returns fewer than n_results when the collection is smaller (or empty)
        res = collection.query(query_embeddings=[query_vec], n_results=n_wanted, include=include, where=where)
        for i, cid in enumerate(res["ids"][0]):
            meta = res["metadatas"][0][i]
            vector = np.asarray(res["embeddings"][0][i], dtype=np.float32) if mmr else None
            hits.append(Hit(cid, res["documents"][0][i], meta["source"], meta.get("page") or None,
                            1.0 - float(res["distances"][0][i]), shared, vector))
    hits.sort(key=lambda h: -h.score)
    for rank, hit in enumerate(hits, 1):
        hit.dense_rank = rank
    if hybrid:
        index = _keyword_index(store, listing, [(c, shared) for c, shared, _ in collections])
        hits = fuse_hits(hits, index.search(query, n_wanted), query_vec, collections)[:n_wanted]
    if mmr and hits:
        from langchain_core.vectorstores.utils import maximal_marginal_relevance

        order = maximal_marginal_relevance(np.asarray(query_vec), [h.embedding for h in hits],
                                           lambda_mult=lambda_mult, k=k)
        return [hits[i] for i in order]
    return hits[:k]


def keyword_index(store, session_id: str, include_sample: bool = True) -> KeywordIndex:
    """The BM25 index search(hybrid=True) uses for this session (its IDF weighs the refusal
    rule's keyword coverage)."""
    listing, collections = store.searchable(session_id, include_sample)
    return _keyword_index(store, listing, [(c, shared) for c, shared, _ in collections])


def _keyword_index(store, listing: Listing, collections: list) -> KeywordIndex:
    """The BM25 index over the searchable chunks of these collections, from the store's cache when
    the session's stored chunks have not changed since it was built."""
    if not collections:
        return KeywordIndex([], [])
    own_ids = [cid for cid, _ in listing.searched]

    def build() -> KeywordIndex:
        ids, texts, labels = [], [], []
        for collection, shared in collections:
            got = collection.get(include=["documents"]) if shared else collection.get(ids=own_ids,
                                                                                     include=["documents"])
            ids += got["ids"]
            texts += got["documents"]
            labels += [collection.name] * len(got["ids"])
        return KeywordIndex(ids, texts, labels)

    owner = "+".join(collection.name for collection, _ in collections)
    return store.keywords.get(owner, listing.fingerprint, build)

"""One question turn over a session's documents, the same for the chat and the `rag_ask` API.

rewrite -> retrieve (the session's collection, and the bundled sample corpus when asked) ->
answer -> cite, all by models/rag/chain.py: the finished RagTurn carries the cited answer, and
`summary` turns it into the plain dict the API returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from models.rag.chain import RagTurn, answer
from models.rag.evaluation import CORPUS_DIR
from models.rag.ingest import ensure_sample
from models.rag.store import DocumentStore

TOP_K = (1, 8)  # the range the UI offers; numbers from the API are clamped to it
MAX_NEW_TOKENS = 120
MAX_QUESTION_TOKENS = 512  # chat-model tokens: the retrieved chunks must still fit beside the question


@dataclass(frozen=True)
class Retrieval:
    """How chunks are found for a question: how many, how close, how diverse, and from where."""

    top_k: int = 4
    threshold: float = 0.3  # cosine below which a chunk is not used
    mmr: bool = False
    include_sample: bool = True

    @classmethod
    def clamped(cls, top_k, threshold, mmr, include_sample) -> Retrieval:
        """From the UI's (or an API client's) values, clamped to the UI's ranges."""
        return cls(min(max(int(top_k), TOP_K[0]), TOP_K[1]), min(max(float(threshold), 0.0), 1.0),
                   bool(mmr), bool(include_sample))


def ask(store: DocumentStore, session_id: str, lm, encoder, question: str, history: list[dict] | None = None,
        retrieval: Retrieval = Retrieval(), *, max_new_tokens: int = MAX_NEW_TOKENS,
        context_tokens: int = 2048) -> Iterator[RagTurn]:
    """Yield the turn after each step and streamed token; the last one is done and cited."""
    if retrieval.include_sample:
        ensure_sample(store, CORPUS_DIR, encoder.tokenizer)  # indexed once, on first use

    def search(query: str):
        return store.search(session_id, query, retrieval.top_k, include_sample=retrieval.include_sample,
                            mmr=retrieval.mmr)

    yield from answer(lm, search, question, history or [], threshold=retrieval.threshold, encoder=encoder,
                      max_new_tokens=max_new_tokens, context_tokens=context_tokens)


def final(turns: Iterable[RagTurn]) -> RagTurn:
    """The last, finished turn of a stream."""
    turn = None
    for turn in turns:  # noqa: B007
        pass
    if turn is None:
        raise ValueError("The chain yielded no turn.")
    return turn


def summary(turn: RagTurn) -> dict:
    """{answer (with [n] markers), standalone, grounded, retrieved, sources}: plain data for an API."""
    sources = [{"n": s.number, "file": s.hit.source, "page": s.hit.page, "score": round(s.hit.score, 4),
                "shared": s.hit.shared, "cited": bool(s.cited_by), "text": s.hit.text}
               for s in (turn.cited.sources if turn.cited else [])]
    return {"answer": turn.text, "standalone": turn.standalone, "grounded": turn.grounded,
            "retrieved": [{"file": h.source, "score": round(h.score, 4), "text": h.text} for h in turn.hits],
            "sources": sources}

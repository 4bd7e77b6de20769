"""One question turn over a session's documents, the same for the chat and the `rag_ask` API.

rewrite -> retrieve (hybrid by default: the session's collection, and the bundled sample corpus
when asked) -> read the best sentences -> check the answer -> decide (models/rag/grounded.py);
with `answering=None`, the chain as it was before issue 18 (models/rag/chain.py: whole chunks,
the cosine threshold alone refuses). The finished turn carries the cited answer, and `summary`
turns it into the plain dict the API returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from models.rag import chain, grounded
from models.rag.chain import RagTurn
from models.rag.evaluation import CORPUS_DIR
from models.rag.ingest import ensure_sample
from models.rag.store import DocumentStore

TOP_K = (1, 8)  # the range the UI offers; numbers from the API are clamped to it
MAX_NEW_TOKENS = 120
MAX_QUESTION_TOKENS = 512  # chat-model tokens: the retrieved chunks must still fit beside the question
# The cosine under which a chunk is never used. With the refusal rule deciding the rest, it only has
# to keep out what is plainly off-topic: the calibration split's answer chunks all score above it
# (bench/rag_quality.py --calibrate prints the lowest: 0.108; 0.3, the value before the rule,
# dropped right chunks).
THRESHOLD = 0.1


@dataclass(frozen=True)
class Retrieval:
    """How chunks are found for a question: how many, how close, how diverse, and from where."""

    top_k: int = 4
    threshold: float = THRESHOLD  # cosine below which a chunk is not used
    mmr: bool = False
    include_sample: bool = True
    hybrid: bool = True  # BM25 fused with the vectors (models/rag/keyword.py)

    @classmethod
    def clamped(cls, top_k, threshold, mmr, include_sample, hybrid=True) -> Retrieval:
        """From the UI's (or an API client's) values, clamped to the UI's ranges."""
        return cls(min(max(int(top_k), TOP_K[0]), TOP_K[1]), min(max(float(threshold), 0.0), 1.0),
                   bool(mmr), bool(include_sample), bool(hybrid))


def ask(store: DocumentStore, session_id: str, lm, encoder, question: str, history: list[dict] | None = None,
        retrieval: Retrieval = Retrieval(), *, answering: grounded.Answering | None = grounded.Answering(),
        max_new_tokens: int = MAX_NEW_TOKENS, context_tokens: int = 2048,
        cache: dict | None = None) -> Iterator[RagTurn]:
    """Yield the turn after each step and streamed token; the last one is done and cited.
    `cache` (optional) keeps the model's finished answers by prompt (see grounded.answer)."""
    if retrieval.include_sample:
        ensure_sample(store, CORPUS_DIR, encoder.tokenizer)  # indexed once, on first use

    def search(query: str):
        return store.search(session_id, query, retrieval.top_k, include_sample=retrieval.include_sample,
                            mmr=retrieval.mmr, hybrid=retrieval.hybrid)

    if answering is None:
        yield from chain.answer(lm, search, question, history or [], threshold=retrieval.threshold, encoder=encoder,
                                max_new_tokens=max_new_tokens, context_tokens=context_tokens)
        return
    index = store.keyword_index(session_id, retrieval.include_sample)
    yield from grounded.answer(lm, search, question, history or [], encoder=encoder, coverage=index.coverage,
                               answering=answering, threshold=retrieval.threshold, context_tokens=context_tokens,
                               cache=cache)


def final(turns: Iterable[RagTurn]) -> RagTurn:
    """The last, finished turn of a stream."""
    turn = None
    for turn in turns:  # noqa: B007
        pass
    if turn is None:
        raise ValueError("The chain yielded no turn.")
    return turn


def summary(turn: RagTurn) -> dict:
    """{answer (with [n] markers), standalone, grounded, retrieved, sources} and, for a grounded turn,
    {supported, refused, draft, claims, signals, decision}: plain data for an API."""
    sources = [{"n": s.number, "file": s.hit.source, "page": s.hit.page, "score": round(s.hit.score, 4),
                "shared": s.hit.shared, "cited": bool(s.cited_by), "text": s.hit.text}
               for s in (turn.cited.sources if turn.cited else [])]
    result = {"answer": turn.text, "standalone": turn.standalone, "grounded": turn.grounded,
              "retrieved": [{"file": h.source, "score": round(h.score, 4), "text": h.text,
                             "dense_rank": h.dense_rank, "keyword_rank": h.keyword_rank,
                             "fused": None if h.fused is None else round(h.fused, 4)} for h in turn.hits],
              "sources": sources}
    if isinstance(turn, grounded.GroundedTurn):
        result.update(grounded.checks(turn))
    return result

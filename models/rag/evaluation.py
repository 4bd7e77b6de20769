"""Retrieval quality on the bundled question set: hit@k and MRR for a chunking and a k.

A chunk answers a question when it comes from the question's document and contains its
evidence phrase (case-insensitive, whitespace collapsed). Retrieval here is exact cosine
search in numpy over the same MiniLM vectors the store holds, so changing the chunk size is
all that changes between runs, and nothing is written to any session.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.rag.chunking import Chunk, split_document
from models.rag.documents import ParsedDocument
from models.similarity import embed

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CORPUS_DIR = ASSETS / "corpus"
QUESTIONS_PATH = ASSETS / "eval" / "rag_questions.json"


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    document: str
    evidence: str


@dataclass
class EvalReport:
    k: int
    n_chunks: int
    hit_at_k: float  # fraction of questions with an answering chunk in the top k
    mrr: float  # mean of 1/rank of the first answering chunk within the top k (0 if none)
    doc_hit_at_k: float  # looser: a chunk of the right document in the top k
    answerable: float  # fraction of questions whose evidence sits whole in some chunk
    rows: list[dict]  # per question: question, rank (None = miss), top source

    def summary(self) -> dict:
        return {"k": self.k, "chunks": self.n_chunks, "hit@k": round(self.hit_at_k, 3),
                "mrr@k": round(self.mrr, 3), "doc_hit@k": round(self.doc_hit_at_k, 3),
                "answerable": round(self.answerable, 3)}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def load_questions(path: Path = QUESTIONS_PATH) -> list[EvalQuestion]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [EvalQuestion(q["question"], q["document"], q["evidence"]) for q in data["questions"]]


def answers(chunk: Chunk, question: EvalQuestion) -> bool:
    return chunk.source == question.document and _norm(question.evidence) in _norm(chunk.text)


def evaluate(encoder, docs: list[ParsedDocument], questions: list[EvalQuestion], splitter, k: int = 4,
             batch_size: int = 64) -> EvalReport:
    if k < 1:
        raise ValueError("k must be at least 1.")
    chunks = [c for doc in docs for c in split_document(doc, splitter)]
    if not chunks:
        raise ValueError("The corpus produced no chunks.")
    chunk_vecs = embed(encoder, [c.text for c in chunks], batch_size)
    q_vecs = embed(encoder, [q.question for q in questions], batch_size)
    order = np.argsort(-(q_vecs @ chunk_vecs.T), axis=1)[:, :k]
    hits = recips = doc_hits = answerable = 0.0
    rows = []
    for q, top in zip(questions, order, strict=True):
        ranked = [chunks[i] for i in top]
        rank = next((r for r, c in enumerate(ranked, 1) if answers(c, q)), None)
        hits += rank is not None
        recips += 1.0 / rank if rank else 0.0
        doc_hits += any(c.source == q.document for c in ranked)
        answerable += any(answers(c, q) for c in chunks)
        rows.append({"question": q.question, "document": q.document, "rank": rank,
                     "top source": ranked[0].source})
    n = len(questions)
    return EvalReport(k, len(chunks), hits / n, recips / n, doc_hits / n, answerable / n, rows)

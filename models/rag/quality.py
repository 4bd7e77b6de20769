"""Answer quality on the bundled held-out set: does the document chat answer right, and refuse right?

The set (assets/eval/rag_heldout) is separate from the sample corpus: eight short documents of
four kinds written for the project, split by document into a calibration half (where defaults
are chosen) and a held-out half (where they are reported). Each question has the strings a right
answer contains, or none when the document does not hold the answer (the bot must refuse).

Per question, `score` reads what a question turn returned (the plain dict of turn.summary):
retrieval rank of the chunk holding the evidence, whether the answer was a refusal, whether it
contains an expected string (case-insensitive, whole words), and the checker's verdict.
`summarize` gives hit@k, MRR, answer accuracy, refusal precision/recall and the
unsupported-claim figures; `evaluate_answers` runs the rows of an `ablation` (the eval button and
bench/rag_quality.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from models.rag.grounded import asserted
from models.rag.reader import model_refused

HELDOUT_DIR = Path(__file__).resolve().parents[2] / "assets" / "eval" / "rag_heldout"
SPLITS = ("calibration", "heldout")


@dataclass(frozen=True)
class QualityQuestion:
    question: str
    document: str
    answers: tuple[str, ...]  # empty: the documents don't contain the answer
    evidence: str
    split: str
    kind: str

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class Outcome:
    """How one question went."""

    q: QualityQuestion
    answer: str
    refused: bool
    right: bool
    rank: int | None  # rank of the first retrieved chunk holding the evidence (None: not retrieved)
    supported: bool | None  # the checker's verdict on the model's answer (None: not checked / refused)
    seconds: float = 0.0


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip().lower()


def load_set(split: str | None = None, folder: Path = HELDOUT_DIR) -> tuple[list[tuple[str, bytes]],
                                                                            list[QualityQuestion]]:
    """(documents as (name, bytes), questions) of one split, or of both when split is None."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    data = json.loads((folder / "questions.json").read_text(encoding="utf-8"))
    docs = {name: meta for name, meta in data["documents"].items() if split in (None, meta["split"])}
    files = [(name, (folder / "documents" / name).read_bytes()) for name in docs]
    questions = [QualityQuestion(q["question"], q["document"],
                                 () if q["answer"] == "unanswerable" else tuple(q["answer"]),
                                 q.get("evidence", ""), docs[q["document"]]["split"], docs[q["document"]]["kind"])
                 for q in data["questions"] if q["document"] in docs]
    return files, questions


def contains_answer(text: str, answers: Iterable[str]) -> bool:
    """True when one of the expected strings occurs in `text` as whole words (case-insensitive)."""
    text = _norm(text)
    return any(re.search(r"(?<!\w)" + re.escape(_norm(a)) + r"(?!\w)", text) for a in answers)


def is_refusal(result: dict, no_answer: str) -> bool:
    """A turn refused when the app said the documents don't hold the answer, or the model said so."""
    return result["answer"].strip() == no_answer or bool(result.get("refused")) or model_refused(result["answer"])


def evidence_rank(result: dict, q: QualityQuestion) -> int | None:
    if not q.answerable:
        return None
    return next((r for r, hit in enumerate(result["retrieved"], 1)
                 if hit["file"] == q.document and _norm(q.evidence) in _norm(hit["text"])), None)


def score(q: QualityQuestion, result: dict, no_answer: str, seconds: float = 0.0) -> Outcome:
    """One question's outcome; a struck-through unsupported claim does not count as answering."""
    refused = is_refusal(result, no_answer)
    right = (not refused and contains_answer(asserted(result["answer"]), q.answers)) if q.answerable else refused
    supported = None if refused else result.get("supported")
    return Outcome(q, result["answer"], refused, right, evidence_rank(result, q), supported, seconds)


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def summarize(outcomes: list[Outcome], k: int) -> dict:
    """The figures of a run (see the module docstring)."""
    answerable = [o for o in outcomes if o.q.answerable]
    unanswerable = [o for o in outcomes if not o.q.answerable]
    refused = [o for o in outcomes if o.refused]
    answered = [o for o in outcomes if not o.refused]
    ranks = [o.rank for o in answerable]
    return {
        "questions": len(outcomes), "answerable": len(answerable), "unanswerable": len(unanswerable),
        f"hit@{k}": _ratio(sum(r is not None and r <= k for r in ranks), len(ranks)),
        f"mrr@{k}": _ratio(sum(1 / r for r in ranks if r is not None and r <= k), len(ranks)),
        "answer_accuracy": _ratio(sum(o.right for o in answerable), len(answerable)),
        "refusal_recall": _ratio(sum(o.refused for o in unanswerable), len(unanswerable)),
        "refusal_precision": _ratio(sum(not o.q.answerable for o in refused), len(refused)),
        "wrongly_refused": sum(o.refused for o in answerable),
        # the checker flagged the model's answer (it is marked, and a source sentence quoted instead)
        "unsupported_rate": _ratio(sum(o.supported is False for o in answered), len(answered)),
        # what must not happen: an answer to an unanswerable question presented as supported
        "unanswerable_shown_supported": sum(o.supported is True for o in unanswerable if not o.refused),
        "overall_accuracy": _ratio(sum(o.right for o in outcomes), len(outcomes)),
        "seconds_per_question": _ratio(sum(o.seconds for o in outcomes), len(outcomes)),
    }


def ablation(retrieval, answering) -> dict[str, tuple]:
    """The rows of the ablation around the current settings: {name: (Retrieval, Answering or None)};
    `None` answering is the chain before issue 18 (dense, cosine 0.3, whole chunks, original prompt)."""
    from dataclasses import replace

    reading = answering.reading

    def read(**changes):
        return replace(answering, reading=replace(reading, **changes))

    return {
        "current settings": (retrieval, answering),
        "before (dense, cosine 0.3, whole chunks, original prompt)": (
            replace(retrieval, threshold=0.3, hybrid=False), None),
        "- hybrid retrieval": (replace(retrieval, hybrid=False), answering),
        "- sentence window (whole chunks)": (retrieval, read(sentence_window=False)),
        "- tight prompt (original prompt)": (retrieval, read(prompt="original")),
        "- first-answer stop (120 tokens)": (retrieval, read(first_answer=False, max_new_tokens=120)),
        "- answer check": (retrieval, replace(answering, verify=False)),
        "- refusal rule (threshold only)": (retrieval, replace(answering, rule=None)),
        "- unfounded-answer refusal (quoted instead)": (
            retrieval, replace(answering, rule=answering.rule and replace(answering.rule, unfounded_sentence=0.0))),
        "+ quote prompt": (retrieval, read(prompt="quote")),
    }


def measured_support(encoder, turn) -> bool | None:
    """The checker's verdict on a finished turn; for one that did not run the check (the rows
    without it), measured here and not acted on."""
    from models.rag.grounded import GroundedTurn
    from models.rag.reader import Reading, build_context
    from models.rag.verify import verify

    if isinstance(turn, GroundedTurn) and turn.verification is not None:
        return turn.supported
    text = re.sub(r"\s*\[\d+\]", "", asserted(turn.answer))
    if not turn.used or model_refused(text) or text.startswith("The documents don't contain"):
        return None
    context = build_context(encoder, turn.standalone, [h.text for h in turn.used], Reading(sentence_window=False))
    verification = verify(encoder, text, context)
    return verification.supported if verification.claims else None


def evaluate_answers(store, session_id: str, lm, encoder, questions: list[QualityQuestion], rows: dict[str, tuple], *,
                     context_tokens: int = 2048, k: int = 4, progress: Callable[[str, int, int], None] | None = None,
                     log: Callable[[str], None] | None = None, cache: dict | None = None) -> dict[str, dict]:
    """Ask every question under every row (in a session already holding the documents) and summarize
    each row. The rows share a cache of the model's answers by prompt, so a row that differs only
    after decoding (the check, the rule) costs no generation."""
    import time

    from models.rag.chain import NO_ANSWER
    from models.rag.turn import ask, final, summary

    cache = {} if cache is None else cache
    results = {}
    for name, (retrieval, answering) in rows.items():
        outcomes = []
        for i, q in enumerate(questions):
            if progress:
                progress(name, i, len(questions))
            start = time.perf_counter()
            turn = final(ask(store, session_id, lm, encoder, q.question, [], retrieval, answering=answering,
                             context_tokens=context_tokens, cache=cache))
            result = summary(turn)
            result["supported"] = measured_support(encoder, turn)
            outcomes.append(score(q, result, NO_ANSWER, time.perf_counter() - start))
            if log:
                log(f"  {name} | {'ok ' if outcomes[-1].right else 'BAD'} {q.question} -> {result['answer'][:100]!r}")
        results[name] = summarize(outcomes, k)
    return results


def sample_questions(questions: list[QualityQuestion], per_document: int) -> list[QualityQuestion]:
    """Up to `per_document` questions of each document, answerable and unanswerable alternating."""
    out = []
    for doc in dict.fromkeys(q.document for q in questions):
        mine = [q for q in questions if q.document == doc]
        yes, no = [q for q in mine if q.answerable], [q for q in mine if not q.answerable]
        mixed = [q for pair in zip(yes, no + [None] * len(yes), strict=False) for q in pair if q is not None]
        out += (mixed + [q for q in mine if q not in mixed])[:per_document]
    return out

"""Answer quality of the document chat on the bundled held-out set (issue 18): before and after,
one row per new piece turned off (the ablation), and the QnA bot's passage mode on the same questions.

    PYTHONPATH=. .venv/bin/python -m bench.rag_quality                  # held-out split, every row
    PYTHONPATH=. .venv/bin/python -m bench.rag_quality --calibrate      # choose the rule's defaults
    PYTHONPATH=. .venv/bin/python -m bench.rag_quality --split calibration --rows "current settings,before"

Every question goes through models/rag/turn.ask, what `rag_ask` runs, in one session holding the
split's documents, with the app's defaults otherwise (sample corpus included, top-k 4, chunks of
128 tokens). The figures are models/rag/quality.py's. Rows that differ only after decoding reuse
the model's answers (a cache keyed by the exact prompt), so they cost no generation.
`--calibrate` runs the calibration split with the rule off, records every signal, and searches
the rule's thresholds and the checker's similarity for the most right outcomes at a refusal
precision of at least 0.9 (models/rag/refusal.calibrate); the defaults in refusal.py, verify.py and
turn.py are what it printed.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from config import Settings
from models.rag import quality
from models.rag.chunking import make_splitter
from models.rag.grounded import Answering, GroundedTurn
from models.rag.ingest import ingest
from models.rag.refusal import Signals, calibrate
from models.rag.store import DocumentStore
from models.rag.turn import Retrieval, ask, final
from models.registry import ModelRegistry

SESSION = "quality-eval"


def setup(split: str):
    """A store of its own holding the split's documents in one session, and the models."""
    base = Settings.from_env()
    settings = replace(base, data_dir=Path(tempfile.mkdtemp(prefix="rag-quality-")))
    registry = ModelRegistry(settings)
    encoder, lm = registry.sentence_encoder(), registry.chat_model()
    store = DocumentStore(settings, registry.sentence_encoder)
    files, questions = quality.load_set(split)
    report = ingest(store, SESSION, files, make_splitter(128, 16, "tokens", encoder.tokenizer))
    assert len(report.added) == len(files), report.rows()
    return settings, store, lm, encoder, questions


def qna_rows(lm, encoder, questions, settings, log=print) -> dict[str, list[quality.Outcome]]:
    """The QnA bot's passage mode, the whole document pasted as the passage: before and after."""
    from models.chat import stream_answer
    from models.qna import prompt as qna
    from models.qna.passage import NO_ANSWER_IN_PASSAGE, passage_turns, shown_text

    docs = {name: data.decode() for name, data in quality.load_set(questions[0].split)[0]}
    rows: dict[str, list[quality.Outcome]] = {"QnA passage before": [], "QnA passage after": []}
    for q in questions:
        start = time.perf_counter()
        prepared = qna.prepare_question(lm, q.question, docs[q.document], [], max_new_tokens=192,
                                        context_tokens=settings.context_tokens)
        text = ""
        for text in stream_answer(lm, prepared.prompt, max_new_tokens=192):  # noqa: B007
            pass
        rows["QnA passage before"].append(quality.score(q, {"answer": text, "retrieved": []}, NO_ANSWER_IN_PASSAGE,
                                                        time.perf_counter() - start))
        start = time.perf_counter()
        turn = final(passage_turns(lm, encoder, q.question, docs[q.document], context_tokens=settings.context_tokens))
        result = {"answer": shown_text(turn), "retrieved": [], "supported": turn.supported}
        rows["QnA passage after"].append(quality.score(q, result, NO_ANSWER_IN_PASSAGE, time.perf_counter() - start))
        log(f"  QnA {q.question}: before {text[:60]!r} / after {result['answer'][:60]!r}")
    return rows


def table(results: dict[str, dict]) -> str:
    keys = ["hit@4", "mrr@4", "answer_accuracy", "refusal_recall", "refusal_precision", "wrongly_refused",
            "unsupported_rate", "unanswerable_shown_supported", "seconds_per_question"]
    lines = ["| row | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, figures in results.items():
        lines.append(f"| {name} | " + " | ".join(str(figures.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)


def evaluate(split: str = "heldout", rows: list[str] | None = None, with_qna: bool = True, log=print) -> dict:
    """Every row of the ablation around the app's defaults (or the named ones), and the QnA rows."""
    settings, store, lm, encoder, questions = setup(split)
    chosen = {name: row for name, row in quality.ablation(Retrieval(), Answering()).items()
              if not rows or name.split(" (")[0] in rows or name in rows}
    results = quality.evaluate_answers(store, SESSION, lm, encoder, questions, chosen,
                                       context_tokens=settings.context_tokens, log=log)
    if with_qna:
        for name, found in qna_rows(lm, encoder, questions, settings, log).items():
            results[name] = quality.summarize(found, 4)
    return {"split": split, "questions": len(questions), "rows": results}


def calibration_records(split: str = "calibration", log=print) -> list[dict]:
    """Every calibration question answered with the rule off, with what each decision would give."""
    settings, store, lm, encoder, questions = setup(split)
    records = []
    for q in questions:
        turn = final(ask(store, SESSION, lm, encoder, q.question, [], Retrieval(threshold=0.0),
                         answering=Answering(rule=None), context_tokens=settings.context_tokens))
        if not isinstance(turn, GroundedTurn) or turn.signals is None:
            continue
        evidence_cos = next((h.score for h in turn.hits if q.answerable and h.source == q.document
                             and quality._norm(q.evidence) in quality._norm(h.text)), None)
        claims = turn.verification.claims if turn.verification else []
        records.append({
            "question": q.question, "answerable": q.answerable, "evidence_cosine": evidence_cos,
            "signals": turn.signals.as_dict(), "draft": turn.draft,
            "draft_right": q.answerable and quality.contains_answer(turn.draft, q.answers),
            "best": turn.context.best.text if turn.context.best else "",
            "best_right": bool(turn.context.best) and q.answerable and quality.contains_answer(
                turn.context.best.text, q.answers),
            "claims": [{"fits": c.fits, "similarity": round(c.similarity, 4), "lexical": c.lexical,
                        "evidence_right": bool(c.evidence) and q.answerable and quality.contains_answer(
                            c.evidence.text, q.answers)} for c in claims]})
        log(f"  {q.question} -> {turn.draft!r} {turn.signals.as_dict()}")
    return records


def choose_rule(records: list[dict], similarities=(0.4, 0.5, 0.6, 0.7)) -> tuple:
    """The rule and the checker's similarity with the most right outcomes at refusal precision >= 0.9
    (refusal.calibrate for each similarity; ties go to the stricter check)."""
    best = None
    for tau in similarities:
        rows = []
        for r in records:
            s = r["signals"]
            verdicts = [c["fits"] and (c["similarity"] >= tau or c["lexical"]) for c in r["claims"]]
            supported = None if s["model_refused"] or not verdicts else all(verdicts)
            signals = Signals(s["top_cosine"], s["fused"], s["coverage"], s["best_sentence"], s["model_refused"],
                              supported)
            quote_right = next((c["evidence_right"] for c, ok in zip(r["claims"], verdicts, strict=True) if not ok),
                               r["best_right"])
            rows.append((signals, r["answerable"], r["draft_right"], quote_right))
        rule, figures = calibrate(rows)
        if best is None or figures["right"] >= best[2]["right"]:
            best = (rule, tau, figures)
    return best


def main() -> dict:
    return evaluate("heldout")


def cli() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="heldout", choices=quality.SPLITS)
    parser.add_argument("--rows", help="comma-separated row names (the part before any bracket)")
    parser.add_argument("--no-qna", action="store_true", help="skip the QnA passage-mode rows")
    parser.add_argument("--calibrate", action="store_true", help="choose the defaults on the calibration split")
    parser.add_argument("--out", help="write the figures (or calibration records) as JSON here")
    args = parser.parse_args()
    if args.calibrate:
        records = calibration_records()
        rule, tau, figures = choose_rule(records)
        cosines = sorted(r["evidence_cosine"] for r in records if r["evidence_cosine"] is not None)
        print(json.dumps({"rule": rule.__dict__, "min_similarity": tau, "figures": figures,
                          "lowest_answer_chunk_cosines": cosines[:3]}, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(records, indent=1))
        return
    figures = evaluate(args.split, args.rows.split(",") if args.rows else None, not args.no_qna)
    print(table(figures["rows"]))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    cli()

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
the rule's thresholds and the checker's similarity and topic margin for the most right outcomes
at a refusal precision of at least 0.9 (models/rag/refusal.calibrate); the defaults in refusal.py,
verify.py and turn.py are what it printed. `--cache FILE` keeps the model's answers by prompt
between runs.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from config import Settings
from models.rag import quality
from models.rag.chunking import make_splitter
from models.rag.grounded import Answering, GroundedTurn, asserted, compose
from models.rag.ingest import ingest
from models.rag.refusal import Decision, calibrate
from models.rag.store import DocumentStore
from models.rag.turn import Retrieval, ask, final
from models.rag.verify import verify
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


def evaluate(split: str = "heldout", rows: list[str] | None = None, with_qna: bool = True, log=print,
             cache: dict | None = None) -> dict:
    """Every row of the ablation around the app's defaults (or the named ones), and the QnA rows."""
    settings, store, lm, encoder, questions = setup(split)
    chosen = {name: row for name, row in quality.ablation(Retrieval(), Answering()).items()
              if not rows or name.split(" (")[0] in rows or name in rows}
    results = quality.evaluate_answers(store, SESSION, lm, encoder, questions, chosen,
                                       context_tokens=settings.context_tokens, log=log, cache=cache)
    if with_qna:
        for name, found in qna_rows(lm, encoder, questions, settings, log).items():
            results[name] = quality.summarize(found, 4)
    return {"split": split, "questions": len(questions), "rows": results}


def load_cache(path: str | None) -> dict:
    """The model's answers by prompt from an earlier run (--cache), so a rerun decodes nothing new."""
    if not path or not Path(path).exists():
        return {}
    return {tuple(key): value for key, value in json.loads(Path(path).read_text())}


def save_cache(cache: dict, path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps([[list(key), value] for key, value in cache.items()]))


def calibration_pass(split: str = "calibration", cache: dict | None = None, log=print) -> tuple[list[dict], object]:
    """Every calibration question answered with the rule off (threshold 0): its signals before
    reading, the model's draft and what the reader saw -- enough to replay any checker setting and
    rule without decoding again. Returns (records, encoder)."""
    settings, store, lm, encoder, questions = setup(split)
    records = []
    for q in questions:
        turn = final(ask(store, SESSION, lm, encoder, q.question, [], Retrieval(threshold=0.0),
                         answering=Answering(rule=None), context_tokens=settings.context_tokens, cache=cache))
        if not isinstance(turn, GroundedTurn) or turn.signals is None:
            continue
        evidence_cos = next((h.score for h in turn.hits if q.answerable and h.source == q.document
                             and quality._norm(q.evidence) in quality._norm(h.text)), None)
        records.append({"q": q, "turn": turn, "evidence_cosine": evidence_cos})
        log(f"  {q.question} -> {turn.draft!r} {turn.signals.as_dict()}")
    return records, encoder


def replay(encoder, record: dict, **checker) -> tuple:
    """(signals, answerable, right if answered, right if quoted) of a record under a checker setting."""
    q, turn = record["q"], record["turn"]
    signals = replace(turn.signals, supported=None, on_topic=None)
    verification = None
    if not turn.signals.model_refused:
        verification = verify(encoder, turn.draft, turn.context, **checker)
        if verification.claims:
            signals = replace(signals, supported=verification.supported, on_topic=verification.on_topic)
    answered = compose(Decision("answer", ""), turn.draft, verification, turn.context)[0]
    quoted = compose(Decision("quote", ""), turn.draft, verification, turn.context)[0]
    return (signals, q.answerable, q.answerable and quality.contains_answer(asserted(answered), q.answers),
            q.answerable and quality.contains_answer(asserted(quoted), q.answers))


class RememberingEncoder:
    """The encoder with its sentence vectors remembered: replaying a checker setting re-embeds nothing.
    (Every caller here encodes with the same options, so a text's vector is its key.)"""

    def __init__(self, encoder):
        self.encoder, self.vectors = encoder, {}

    def encode(self, texts, **kwargs):
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.encoder.encode(missing, **kwargs), strict=True))
        return np.stack([self.vectors[t] for t in texts])


CHECKER_GRID = {"min_similarity": (0.4, 0.5, 0.6, 0.7), "topic_margin": (0.05, 0.1, 0.15, 0.2, 0.3, 2.0),
                "reach": (0, 1)}


def choose_rule(records: list[dict], encoder) -> tuple:
    """The checker setting and rule with the most right outcomes at refusal precision >= 0.9
    (refusal.calibrate for each checker setting; ties go to the stricter check)."""
    best, encoder = None, RememberingEncoder(encoder)
    for values in itertools.product(*CHECKER_GRID.values()):
        checker = dict(zip(CHECKER_GRID, values, strict=True))
        rule, figures = calibrate([replay(encoder, r, **checker) for r in records])
        key = (figures["right"], checker["min_similarity"], -checker["topic_margin"], -checker["reach"])
        if best is None or key > best[0]:
            best = (key, rule, checker, figures)
    return best[1:]


def main() -> dict:
    return evaluate("heldout")


def cli() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="heldout", choices=quality.SPLITS)
    parser.add_argument("--rows", help="comma-separated row names (the part before any bracket)")
    parser.add_argument("--no-qna", action="store_true", help="skip the QnA passage-mode rows")
    parser.add_argument("--calibrate", action="store_true", help="choose the defaults on the calibration split")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--cache", help="a JSON file of the model's answers by prompt, read and updated")
    args = parser.parse_args()
    cache = load_cache(args.cache)
    if args.calibrate:
        records, encoder = calibration_pass(cache=cache)
        save_cache(cache, args.cache)
        rule, checker, figures = choose_rule(records, encoder)
        cosines = sorted(r["evidence_cosine"] for r in records if r["evidence_cosine"] is not None)
        print(json.dumps({"rule": rule.__dict__, "checker": checker, "figures": figures,
                          "lowest_answer_chunk_cosines": [round(c, 3) for c in cosines[:3]]}, indent=1))
        return
    figures = evaluate(args.split, args.rows.split(",") if args.rows else None, not args.no_qna, cache=cache)
    save_cache(cache, args.cache)
    print(table(figures["rows"]))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    cli()

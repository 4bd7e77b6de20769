"""Retrieval quality on the bundled questions: hit@k and MRR@k for chunk sizes and k; with
`--answers`, answer quality on the held-out set (accuracy, refusal precision/recall, unsupported
claims) for the current defaults and with each new piece turned off.

    PYTHONPATH=. .venv/bin/python -m bench.rag_eval                       # the default sweep
    PYTHONPATH=. .venv/bin/python -m bench.rag_eval --chunk-size 256 --overlap 32 -k 2
    PYTHONPATH=. .venv/bin/python -m bench.rag_eval --unit characters --chunk-size 500 --overlap 50
    PYTHONPATH=. .venv/bin/python -m bench.rag_eval --answers             # bench/rag_quality.py's table

The same computations as the tab's evaluation buttons (models/rag/evaluation.py, models/rag/quality.py).
"""

from __future__ import annotations

from config import Settings
from models.rag.chunking import make_splitter
from models.rag.documents import load_folder
from models.rag.evaluation import CORPUS_DIR, evaluate, load_questions
from models.registry import ModelRegistry

SWEEP = [(64, 8), (128, 16), (256, 32)]
KS = (1, 4)


def run(chunk_sizes: list[tuple[int, int]], ks: tuple[int, ...], unit: str = "tokens") -> list[dict]:
    registry = ModelRegistry(Settings.from_env())
    encoder = registry.sentence_encoder()
    docs, questions = load_folder(CORPUS_DIR), load_questions()
    results = []
    for size, overlap in chunk_sizes:
        splitter = make_splitter(size, overlap, unit, encoder.tokenizer)
        report = evaluate(encoder, docs, questions, splitter, k=max(ks))
        for k in ks:  # one retrieval at the largest k gives every smaller k
            ranks = [r["rank"] for r in report.rows]
            hits = [r for r in ranks if r is not None and r <= k]
            results.append({"chunk_size": size, "overlap": overlap, "unit": unit, "k": k,
                            "chunks": report.n_chunks, "hit@k": round(len(hits) / len(ranks), 3),
                            "mrr@k": round(sum(1 / r for r in hits) / len(ranks), 3)})
    return results


def main() -> dict:
    rows = run(SWEEP, KS)
    return {f"{r['chunk_size']}{r['unit'][0]}/k={r['k']}": {"hit@k": r["hit@k"], "mrr@k": r["mrr@k"],
                                                            "chunks": r["chunks"]} for r in rows}


def cli() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-size", type=int, help="one chunk size (default: a sweep of 64/128/256)")
    parser.add_argument("--overlap", type=int, default=None, help="overlap (default: 1/8 of the size)")
    parser.add_argument("--unit", choices=["tokens", "characters"], default="tokens")
    parser.add_argument("-k", type=int, action="append", help="k (repeatable; default 1 and 4)")
    parser.add_argument("--answers", action="store_true",
                        help="answer quality on the held-out set, with and without each new piece")
    args = parser.parse_args()
    if args.answers:
        from bench.rag_quality import evaluate, table

        print(table(evaluate("heldout", with_qna=False)["rows"]))
        return
    sizes = ([(args.chunk_size, args.overlap if args.overlap is not None else args.chunk_size // 8)]
             if args.chunk_size else SWEEP)
    print(f"{'size':>6} {'overlap':>7} {'unit':>10} {'k':>3} {'chunks':>6} {'hit@k':>6} {'MRR@k':>6}")
    for r in run(sizes, tuple(sorted(args.k or KS)), args.unit):
        print(f"{r['chunk_size']:>6} {r['overlap']:>7} {r['unit']:>10} {r['k']:>3} {r['chunks']:>6} "
              f"{r['hit@k']:>6.3f} {r['mrr@k']:>6.3f}")


if __name__ == "__main__":
    cli()

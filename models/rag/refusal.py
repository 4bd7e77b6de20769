"""When to say "the documents don't contain the answer": signals, and a rule calibrated on them.

A cosine threshold alone refuses answerable questions whose chunk is phrased differently and
answers in-domain questions the documents never address. Signals that separate the two:

- `best_sentence`: the best cosine between the question and any sentence of the retrieved chunks
  (a chunk can be on-topic while no sentence in it answers);
- `coverage`: the IDF-weighted share of the question's content words found in what the model
  read (an unanswerable in-domain question usually asks about a word the documents never use:
  "Wi-Fi password", "gluten-free");
- `top_cosine` and `fused`: the dense score of the best chunk, and its reciprocal-rank-fusion
  share (1.0 = first for both the vectors and BM25);
- the model's own answer: whether it declined, whether the checker found it supported, whether
  the sentence it rests on is about the question (`on_topic`), and the figures, codes and names it
  states that occur nowhere in what it read (`invented`, models/rag/verify.py), and whether it is
  a denial (`denies`): asked what the documents never say, a small model makes a figure up
  ("built in 1992", "1.25 kg") or denies the thing exists ("The library does not have a café").

The rule runs in two steps. Before reading, it refuses when nothing in the documents is close
(`best_sentence` or `coverage` under its floor) -- the model is not asked to guess. After
reading, a supported, on-topic answer stands; an unfounded answer (an invented figure, or a denial
the documents do not support) is refused unless the best sentence is close (`unfounded_sentence`);
any other declined, unsupported or off-topic answer becomes the quoted best sentence when the
evidence is strong (`quote_sentence`, `quote_coverage`), else a refusal. The thresholds are chosen
by `calibrate` on the calibration split (bench/rag_quality.py --calibrate) and shown in the UI
with the signals of each turn.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Signals:
    top_cosine: float = 0.0
    fused: float | None = None  # None: keyword search was off
    coverage: float = 0.0
    best_sentence: float = 0.0
    model_refused: bool | None = None  # None: the model was not asked
    supported: bool | None = None  # None: not checked
    on_topic: bool | None = None  # None: not checked
    invented: tuple[str, ...] | None = None  # None: not checked (the model declined or was not asked)
    denies: bool | None = None  # None: not checked

    @property
    def unfounded(self) -> bool:
        """The answer is not the documents' but the model's: an invented figure, or a denial
        (only an answer the checker did not accept)."""
        return bool(self.invented) or bool(self.denies)

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Decision:
    action: str  # "refuse" | "answer" | "quote"
    reason: str

    @property
    def refused(self) -> bool:
        return self.action == "refuse"


@dataclass(frozen=True)
class RefusalRule:
    """Thresholds of the two-step rule (module docstring); the defaults come from `calibrate`."""

    min_sentence: float = 0.0
    min_coverage: float = 0.2
    quote_sentence: float = 0.0  # 0: a declined or unsupported answer always becomes the best sentence, quoted
    quote_coverage: float = 0.0
    unfounded_sentence: float = 0.6  # refuse an unfounded answer under this best-sentence cosine (0: never)

    def before_reading(self, s: Signals) -> Decision | None:
        """A refusal when nothing retrieved is close enough to be worth reading, else None."""
        if s.best_sentence < self.min_sentence:
            return Decision("refuse", f"best sentence cosine {s.best_sentence:.2f} < {self.min_sentence:.2f}")
        if s.coverage < self.min_coverage:
            return Decision("refuse", f"keyword coverage {s.coverage:.2f} < {self.min_coverage:.2f}")
        return None

    def strong(self, s: Signals) -> bool:
        return s.best_sentence >= self.quote_sentence and s.coverage >= self.quote_coverage

    def after_reading(self, s: Signals) -> Decision:
        """What to show once the model answered and the answer was checked."""
        early = self.before_reading(s)
        if early is not None:
            return early
        if not s.model_refused and s.supported is not False and s.on_topic is not False:
            return Decision("answer", "the model answered and the answer is supported")
        if s.unfounded and s.best_sentence < self.unfounded_sentence:
            what = (f"states {', '.join(s.invented)}, found nowhere in what the model read" if s.invented else
                    "is a denial the documents do not support")
            return Decision("refuse", f"the answer {what}, and the best sentence is not close (cosine "
                                      f"{s.best_sentence:.2f} < {self.unfounded_sentence:.2f}): the documents "
                                      f"likely don't say")
        why = ("the model declined" if s.model_refused else "the model's answer is not supported"
               if s.supported is False else "the model's answer rests on a sentence that is not about the question")
        if self.strong(s):
            return Decision("quote", f"{why}, but the best sentence is close (cosine {s.best_sentence:.2f}, "
                                     f"coverage {s.coverage:.2f}): it is quoted")
        return Decision("refuse", f"{why}, and the evidence is weak")

    def describe(self) -> str:
        """The rule in one paragraph, for the UI."""
        return (f"Refuse before asking the model if the best sentence's cosine is under {self.min_sentence:.2f} "
                f"or the question's keyword coverage is under {self.min_coverage:.2f}. Otherwise keep a "
                f"supported answer about the question. Refuse an unfounded answer (a figure, code or name found "
                f"nowhere in what the model read, or an unsupported denial) when the best sentence's cosine is "
                f"under {self.unfounded_sentence:.2f}. If the model declines, or its answer is unsupported or "
                f"off-topic, quote the best sentence when its cosine is at least {self.quote_sentence:.2f} and "
                f"coverage at least {self.quote_coverage:.2f}, else refuse.")


DEFAULT_RULE = RefusalRule()
OFF = RefusalRule(0.0, 0.0, 2.0, 2.0, 0.0)  # never refuses on signals (the ablation's "rule off")


def outcome(rule: RefusalRule, s: Signals, answerable: bool, right_if_answered: bool,
            right_if_quoted: bool) -> tuple[bool, bool]:
    """(refused, right) of a question under `rule`, given what answering or quoting would give."""
    decision = rule.after_reading(s)
    if decision.refused:
        return True, not answerable
    right = right_if_quoted if decision.action == "quote" else right_if_answered
    return False, answerable and right


def calibrate(records: Iterable[tuple[Signals, bool, bool, bool]], *, min_precision: float = 0.9,
              grid: dict[str, list[float]] | None = None) -> tuple[RefusalRule, dict]:
    """The rule with the most right outcomes on `records` (signals, answerable, right if answered,
    right if quoted) among those whose refusal precision is at least `min_precision`; ties go to
    the rule refusing least. Returns (rule, its figures). Vectorised over the records: each rule of
    the grid gives the same outcomes as `outcome`."""
    records = list(records)
    grid = grid or {"min_sentence": [0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45],
                    "min_coverage": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
                    "quote_sentence": [0.0, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 2.0],
                    "quote_coverage": [0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0],
                    "unfounded_sentence": [0.0, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 2.0]}
    best_sentence = np.array([s.best_sentence for s, *_ in records])
    coverage = np.array([s.coverage for s, *_ in records])
    accepted = np.array([not s.model_refused and s.supported is not False and s.on_topic is not False
                         for s, *_ in records])
    unfounded = np.array([s.unfounded for s, *_ in records])
    answerable = np.array([a for _, a, _, _ in records])
    right_answer = answerable & np.array([r for *_, r, _ in records])
    right_quote = answerable & np.array([r for *_, r in records])
    best, best_key, best_figures = None, None, {}
    for values in itertools.product(*grid.values()):
        rule = RefusalRule(**dict(zip(grid, values, strict=True)))
        early = (best_sentence < rule.min_sentence) | (coverage < rule.min_coverage)
        strong = (best_sentence >= rule.quote_sentence) & (coverage >= rule.quote_coverage)
        made_up = ~accepted & unfounded & (best_sentence < rule.unfounded_sentence)
        refused = early | made_up | (~accepted & ~strong)
        right = np.where(refused, ~answerable, np.where(accepted, right_answer, right_quote))
        n_refused = int(refused.sum())
        precision = float((refused & ~answerable).sum() / n_refused) if n_refused else 1.0
        if precision < min_precision:
            continue
        key = (int(right.sum()), -n_refused)
        if best_key is None or key > best_key:
            best, best_key = rule, key
            best_figures = {"right": key[0], "of": len(records), "refused": n_refused,
                            "refusal_precision": round(precision, 3),
                            "refusal_recall": round(float((refused & ~answerable).sum() / max(1, (~answerable).sum())),
                                                    3)}
    if best is None:
        raise ValueError("No rule in the grid reaches the required refusal precision.")
    return best, best_figures

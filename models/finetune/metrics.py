"""Validation scores in NumPy: accuracy, F1, the confusion matrix, and the two zero-shot baselines.

What it teaches: accuracy alone hides which classes are confused; F1 (of the positive class
for two labels, macro-averaged otherwise) and the confusion matrix show it. A fine-tuned model
is only as good as its margin over what needs no training at all: always answering the most
frequent label, or (for pairs) calling two sentences paraphrases when their embeddings'
cosine similarity passes a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    accuracy: float
    f1: float
    confusion: tuple[tuple[int, ...], ...]  # rows: true label, columns: predicted label

    def as_dict(self) -> dict:
        return {"accuracy": round(self.accuracy, 4), "f1": round(self.f1, 4),
                "confusion": [list(row) for row in self.confusion]}


def confusion_matrix(y_true, y_pred, n_labels: int) -> np.ndarray:
    matrix = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def f1_from_confusion(matrix: np.ndarray) -> float:
    """F1 of label 1 for two labels (as MRPC reports it), else the macro average over labels."""
    tp = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    denominator = predicted + actual
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(f1[1]) if len(matrix) == 2 else float(f1.mean())


def scores(y_true, y_pred, n_labels: int) -> Scores:
    matrix = confusion_matrix(y_true, y_pred, n_labels)
    total = matrix.sum()
    accuracy = float(np.trace(matrix) / total) if total else 0.0
    return Scores(accuracy, f1_from_confusion(matrix), tuple(tuple(int(v) for v in row) for row in matrix))


def majority_label(train_labels) -> int:
    """The most frequent training label (the lowest index on a tie)."""
    return int(np.bincount(np.asarray(train_labels, dtype=np.int64)).argmax())


def best_threshold(similarities, labels) -> float:
    """The cosine threshold that classifies the training pairs best (label 1 when sim >= threshold):
    one number fitted on the training set, the strongest similarity-only rule."""
    sims, labels = np.asarray(similarities, dtype=np.float64), np.asarray(labels)
    order = np.argsort(sims)
    sims, labels = sims[order], labels[order]
    # Threshold just at sims[i]: pairs before i are called 0, pairs from i on are called 1.
    # The last candidate, just above every similarity, calls every pair 0.
    correct = np.concatenate([(labels[::-1] == 1).cumsum()[::-1], [0]]) + np.concatenate([[0], (labels == 0).cumsum()])
    candidates = np.concatenate([sims, [np.nextafter(sims[-1], np.inf)]])
    return float(candidates[int(np.argmax(correct))])


def cosine(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return (u * v).sum(-1)


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The two principal components of a set of vectors (signs fixed so that pictures are stable)."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    points = centred @ vt[:2].T
    signs = np.sign(points[np.abs(points).argmax(axis=0), range(2)])
    return points * np.where(signs == 0, 1, signs)

"""Part 1's run: a task, a regime and the settings in; baseline and final scores, the curve, the
validation examples still wrong and the trained weights out.

What it teaches: the same pretrained encoder adapts to a new task with a small new head, and
how much of it may change decides the cost (trainable parameters, seconds) and the result.
Batches are padded only to their longest sentence (DataCollatorWithPadding, as in the course
notebook); the run counts the tokens that saved against padding every sentence to a fixed length.
With the encoder frozen its embeddings never change, so they are computed once and the Trainer
trains the head on them: seconds instead of a minute, the same arithmetic.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from transformers import default_data_collator

from models.finetune import metrics
from models.finetune.control import OPTIMIZERS, Emit, TrainingStopped, seeded
from models.finetune.data import Task
from models.finetune.embeddings import MeteredCollator, base_embeddings, embed_texts, tokenize
from models.finetune.encoder import (
    FROZEN,
    LORA,
    TOP_LAYERS,
    Regime,
    build,
    load_weights,
    parameter_counts,
    trained_weights,
)

# layers <= 2: a session keeps the weights it trained for as long as gradio keeps its state (an hour
# after its tab closes); two MiniLM layers are 3.5M parameters, 14.2 MB (a LoRA run's: 0.5 MB).
LIMITS = {"steps": (5, 400), "batch_size": (4, 64), "learning_rate": (1e-5, 1.0), "layers": (1, 2),
          "rank": (1, 32), "seed": (0, 2**31 - 1)}
MAX_TRAIN, MAX_VALIDATION = 800, 200
MAX_ERRORS = 12


@dataclass(frozen=True)
class RunConfig:
    regime: Regime = field(default_factory=Regime)
    optimizer: str = "adamw"
    learning_rate: float = 3e-3
    steps: int = 60
    batch_size: int = 16
    seed: int = 0


def _clip(name: str, value, notes: list[str]):
    low, high = LIMITS[name]
    clipped = type(low)(min(max(value, low), high))
    if clipped != value:
        notes.append(f"{name.replace('_', ' ')} {value} is outside {low}–{high}; using {clipped}.")
    return clipped


def clamp(cfg: RunConfig) -> tuple[RunConfig, list[str]]:
    """The configuration within the tab's ranges, and a note for every value that was changed."""
    notes: list[str] = []
    if cfg.regime.kind not in (FROZEN, TOP_LAYERS, LORA):
        raise ValueError(f"Unknown regime {cfg.regime.kind!r}; choose frozen, top layers or lora.")
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {cfg.optimizer!r}; choose {' or '.join(OPTIMIZERS)}.")
    regime = replace(cfg.regime, layers=_clip("layers", int(cfg.regime.layers), notes),
                     rank=_clip("rank", int(cfg.regime.rank), notes))
    return replace(cfg, regime=regime, learning_rate=_clip("learning_rate", float(cfg.learning_rate), notes),
                   steps=_clip("steps", int(cfg.steps), notes),
                   batch_size=_clip("batch_size", int(cfg.batch_size), notes),
                   seed=_clip("seed", int(cfg.seed), notes)), notes


@dataclass
class ClassifierRun:
    """A finished run: what the tab shows, and the weights a session keeps for predictions."""

    task: str
    labels: tuple[str, ...]
    pair: bool
    config: RunConfig
    baseline_name: str
    baseline: metrics.Scores
    final: metrics.Scores
    history: list[dict]
    trainable: int
    total: int
    padding: dict
    errors: list[dict]
    best_step: int
    steps_done: int
    stopped: bool
    seconds: float
    change: dict  # what moved in the embeddings: cosines (pairs) or 2-D projections (one sentence)
    weights: dict = field(repr=False, default_factory=dict)

    def summary(self) -> dict:
        """Plain data for the API: settings, parameter counts, both scores, the curve."""
        return {"task": self.task, "regime": self.config.regime.kind, "regime_detail": self.config.regime.describe(),
                "optimizer": self.config.optimizer, "learning_rate": self.config.learning_rate,
                "steps": self.steps_done, "batch_size": self.config.batch_size, "seed": self.config.seed,
                "trainable_parameters": self.trainable, "total_parameters": self.total,
                "trainable_percent": round(100 * self.trainable / self.total, 4),
                "baseline": {"name": self.baseline_name, **self.baseline.as_dict()},
                "final": self.final.as_dict(), "best_step": self.best_step, "stopped": self.stopped,
                "seconds": round(self.seconds, 2), "padding": self.padding,
                "loss_history": [[e["step"], round(e["loss"], 5)] for e in self.history if e["kind"] == "loss"],
                "validation_history": [[e["step"], round(e.get("accuracy", 0.0), 4), round(e.get("f1", 0.0), 4)]
                                       for e in self.history if e["kind"] == "eval"]}


def _limit(task: Task) -> Task:
    return replace(task, train=task.train[:MAX_TRAIN], validation=task.validation[:MAX_VALIDATION])


def _baseline(task: Task, base: dict) -> tuple[str, metrics.Scores]:
    y_train = np.array([ex.label for ex in task.train])
    y_val = np.array([ex.label for ex in task.validation])
    if task.is_pair:
        threshold = metrics.best_threshold(base["cos_train"], y_train)
        predicted = (base["cos_validation"] >= threshold).astype(int)
        return f"cosine similarity ≥ {threshold:.3f} (threshold fitted on the training pairs)", \
            metrics.scores(y_val, predicted, len(task.labels))
    label = metrics.majority_label(y_train)
    return f"always “{task.labels[label]}” (the most frequent training label)", \
        metrics.scores(y_val, np.full_like(y_val, label), len(task.labels))


def _compute_metrics(n_labels: int):
    def compute(prediction) -> dict:
        predicted = np.asarray(prediction.predictions).argmax(-1)
        result = metrics.scores(prediction.label_ids, predicted, n_labels)
        return {"accuracy": result.accuracy, "f1": result.f1}

    return compute


def _datasets(task: Task, tokenizer, base: dict, regime: Regime) -> tuple[list, list]:
    """Training/validation items: precomputed embeddings for a frozen encoder, else token ids."""
    def items(split: str, examples) -> list[dict]:
        if regime.kind == FROZEN:
            u, v = base[f"u_{split}"], base.get(f"v_{split}")
            return [{"features": torch.from_numpy(u[i]), **({"features_b": torch.from_numpy(v[i])} if v is not None
                                                             else {}), "labels": ex.label}
                    for i, ex in enumerate(examples)]
        return [{**tokenize(tokenizer, ex.text), **({f"{k}_b": val for k, val in tokenize(tokenizer, ex.text_b).items()}
                                                    if ex.text_b is not None else {}), "labels": ex.label}
                for ex in examples]

    return items("train", task.train), items("validation", task.validation)


def train_classifier(encoder, tokenizer, task: Task, cfg: RunConfig, *, stop: threading.Event | None = None,
                     emit: Emit | None = None, cache=None) -> ClassifierRun:
    """Train a copy of `encoder` (the shared, never-modified MiniLM transformer) on `task`."""
    from models.finetune.trainer import LiveCallback, run_trainer  # the Trainer loads with the first run

    start = time.perf_counter()
    cfg, _ = clamp(cfg)
    task, stop, emit = _limit(task), stop or threading.Event(), emit or (lambda event: None)
    emit({"kind": "status", "text": "Embedding every sentence with the pretrained encoder (baseline)…"})
    base = base_embeddings(encoder, tokenizer, task, cache=cache, stop=stop)
    baseline_name, baseline = _baseline(task, base)
    emit({"kind": "baseline", "name": baseline_name, "accuracy": baseline.accuracy, "f1": baseline.f1})
    with seeded(cfg.seed):
        model = build(encoder, len(task.labels), task.is_pair, cfg.regime)
    trainable, total = parameter_counts(model)
    emit({"kind": "status", "text": f"Training {trainable:,} of {total:,} parameters…"})
    train_set, val_set = _datasets(task, tokenizer, base, cfg.regime)
    collator = default_data_collator if cfg.regime.kind == FROZEN else MeteredCollator(tokenizer, task.is_pair)
    callback = LiveCallback(model, emit, stop, "accuracy", trained_weights)
    # Evaluating a frozen head reads stored embeddings (free); otherwise it encodes the validation set.
    steps_per_eval = max(1, cfg.steps // (20 if cfg.regime.kind == FROZEN else 6))
    if stop.is_set():
        raise TrainingStopped("Stopped before training began: nothing was trained.")
    run_trainer(model, train_dataset=train_set, eval_dataset=val_set, collator=collator,
                    compute_metrics=_compute_metrics(len(task.labels)), callback=callback, seed=cfg.seed,
                    optimizer=cfg.optimizer, learning_rate=cfg.learning_rate, steps=cfg.steps,
                    batch_size=cfg.batch_size, eval_every=steps_per_eval, log_every=max(1, cfg.steps // 100))
    best = callback.best
    if best is not None:
        load_weights(model, best.weights)
    emit({"kind": "status", "text": "Scoring the best checkpoint on the validation set…"})
    after = _validation_embeddings(model, tokenizer, task, base, cfg.regime)
    with torch.no_grad():
        probs = torch.softmax(model.classify(*(torch.from_numpy(a) for a in after if a is not None)), -1).numpy()
    predicted = probs.argmax(-1)
    y_val = np.array([ex.label for ex in task.validation])
    padding = collator.stats() if isinstance(collator, MeteredCollator) else base["padding"]
    steps_done = max((e["step"] for e in callback.history), default=0)
    return ClassifierRun(
        task=task.name, labels=task.labels, pair=task.is_pair, config=cfg, baseline_name=baseline_name,
        baseline=baseline, final=metrics.scores(y_val, predicted, len(task.labels)), history=callback.history,
        trainable=trainable, total=total, padding=padding, errors=_errors(task, probs, predicted),
        best_step=best.step if best else 0, steps_done=steps_done, stopped=callback.stopped_at is not None or
        stop.is_set(), seconds=time.perf_counter() - start, change=_change(task, base, *after),
        weights=best.weights if best else trained_weights(model))


def _errors(task: Task, probs: np.ndarray, predicted: np.ndarray) -> list[dict]:
    wrong = [i for i, ex in enumerate(task.validation) if predicted[i] != ex.label]
    wrong.sort(key=lambda i: -probs[i, predicted[i]])  # the most confident mistakes first
    return [{"text": task.validation[i].text, "text_b": task.validation[i].text_b,
             "true": task.labels[task.validation[i].label], "predicted": task.labels[int(predicted[i])],
             "confidence": float(probs[i, predicted[i]])} for i in wrong[:MAX_ERRORS]]


def _validation_embeddings(model, tokenizer, task: Task, base: dict, regime: Regime):
    """(u, v) of the validation set by the trained encoder (v None for one sentence): one pass,
    used for the final scores and for what moved. A frozen encoder's are the stored ones."""
    if regime.kind == FROZEN:
        return base["u_validation"], base.get("v_validation")
    u = embed_texts(model, tokenizer, [ex.text for ex in task.validation])
    return u, embed_texts(model, tokenizer, [ex.text_b for ex in task.validation]) if task.is_pair else None


def _change(task: Task, base: dict, after_u: np.ndarray, after_v: np.ndarray | None) -> dict:
    """Validation embeddings before and after: the cosine of each pair, or a 2-D map of sentences."""
    labels = [ex.label for ex in task.validation]
    if task.is_pair:
        return {"labels": labels, "cos_before": base["cos_validation"].tolist(),
                "cos_after": metrics.cosine(after_u, after_v).tolist()}
    return {"labels": labels, "before": metrics.pca_2d(base["u_validation"]).tolist(),
            "after": metrics.pca_2d(after_u).tolist()}


def predict(encoder, tokenizer, run: ClassifierRun, text: str, text_b: str | None = None) -> dict:
    """The trained model's label probabilities for one input (text_b for a pair task), and for a
    pair the cosine of the two embeddings before and after training."""
    with seeded(run.config.seed):  # building draws initial weights, then the trained ones replace them
        model = build(encoder, len(run.labels), run.pair, run.config.regime)
    load_weights(model, run.weights).eval()
    with torch.no_grad():
        u = embed_texts(model, tokenizer, [text], as_tensor=True)
        v = embed_texts(model, tokenizer, [text_b], as_tensor=True) if run.pair else None
        probs = torch.softmax(model.classify(u, v), -1)[0].tolist()
    result = {"label": run.labels[int(np.argmax(probs))], "probabilities": dict(zip(run.labels, probs, strict=True))}
    if run.pair:
        before = embed_texts(encoder, tokenizer, [text, text_b])  # the shared pretrained encoder, read only
        result |= {"cosine_before": float(before[0] @ before[1]), "cosine_after": float((u[0] @ v[0]).item())}
    return result

"""The training loop of every fine-tuning run: transformers' Trainer with two learning rates,
and the callback that streams the curve, stops on request and keeps the best checkpoint.

What it teaches: the Trainer owns the loop (batches, forward, loss, backward, optimizer step,
learning-rate schedule, evaluation); a TrainerCallback sees every step and can steer it — here it
reports the loss and the validation scores as they come, sets `control.should_training_stop` when
the user presses Stop, and remembers the weights of the best evaluation so far.

Parameters that are new (the head, LoRA adapters) learn at the chosen learning rate; pretrained
weights that are unfrozen learn ten times slower, so a few dozen steps adapt them without
erasing what they know (discriminative learning rates, as in ULMFiT).

Importing this module loads the Trainer (and peft): models/finetune/classifier.py and lora_chat.py
import it when a run starts, not at the app's start (models/finetune/control.py holds the rest).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from models.finetune.control import OPTIMIZERS, PRETRAINED_LR_FACTOR, Emit, is_new, seeded


class LoopTrainer(Trainer):
    """transformers' Trainer whose optimizer gives pretrained weights a smaller learning rate."""

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            lr = self.args.learning_rate
            trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            groups = [{"params": [p for n, p in trainable if is_new(n)], "lr": lr},
                      {"params": [p for n, p in trainable if not is_new(n)], "lr": lr * PRETRAINED_LR_FACTOR}]
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls([g for g in groups if g["params"]], **kwargs)
        return self.optimizer


def training_arguments(output_dir: str, *, optimizer: str, learning_rate: float, steps: int, batch_size: int,
                       seed: int, eval_every: int, log_every: int = 1, eval_batch_size: int = 64,
                       loss_only: bool = False) -> TrainingArguments:
    """One run on the CPU, nothing written to disk, nothing reported anywhere. `loss_only`: evaluate
    the loss without gathering logits (a language model's are vocabulary-sized)."""
    return TrainingArguments(
        output_dir=output_dir, use_cpu=True, report_to="none", disable_tqdm=True, save_strategy="no",
        max_steps=steps, per_device_train_batch_size=batch_size, per_device_eval_batch_size=eval_batch_size,
        prediction_loss_only=loss_only,
        learning_rate=learning_rate, optim=OPTIMIZERS[optimizer], weight_decay=0.0, lr_scheduler_type="linear",
        warmup_steps=0, logging_steps=log_every, logging_first_step=True, eval_strategy="steps",
        eval_steps=eval_every, eval_on_start=True, seed=seed, data_seed=seed, dataloader_num_workers=0,
        remove_unused_columns=False, label_names=["labels"])


@dataclass
class Best:
    score: float
    step: int
    weights: dict = field(repr=False)


class LiveCallback(TrainerCallback):
    """Streams {"kind": "loss" | "eval", "step", ...} events, stops when `stop` is set, and keeps a
    copy of the trainable weights at the best evaluation of `metric`."""

    def __init__(self, model: torch.nn.Module, emit: Emit, stop: threading.Event, metric: str,
                 snapshot: Callable[[torch.nn.Module], dict], greater_is_better: bool = True):
        self.model, self.emit, self.stop, self.metric, self.snapshot = model, emit, stop, metric, snapshot
        self.sign = 1.0 if greater_is_better else -1.0
        self.history: list[dict] = []
        self.best: Best | None = None
        self.stopped_at: int | None = None

    def _record(self, event: dict) -> None:
        self.history.append(event)
        self.emit(event)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._record({"kind": "loss", "step": state.global_step, "loss": float(logs["loss"])})

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        scores = {key[len("eval_"):]: float(value) for key, value in (metrics or {}).items()
                  if key.startswith("eval_") and isinstance(value, (int, float))
                  and not key.endswith(("runtime", "per_second"))}
        self._record({"kind": "eval", "step": state.global_step, **scores})
        score = scores.get(self.metric)
        if score is not None and (self.best is None or self.sign * score > self.sign * self.best.score):
            self.best = Best(score, state.global_step, self.snapshot(self.model))

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop.is_set() and not control.should_training_stop:
            control.should_training_stop = True
            self.stopped_at = state.global_step


def run_trainer(model, *, train_dataset, eval_dataset, collator, compute_metrics, callback: LiveCallback,
                seed: int, **arguments) -> float:
    """Build the Trainer (seeded) and train; returns the seconds spent in trainer.train()."""
    import time

    with tempfile.TemporaryDirectory(prefix="genai-lab-finetune-") as output_dir:
        with seeded(seed):
            args = training_arguments(output_dir, seed=seed, **arguments)
            trainer = LoopTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                                  data_collator=collator, compute_metrics=compute_metrics, callbacks=[callback])
            trainer.remove_callback(PrinterCallback)  # the log goes to the callback, not to stdout
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start

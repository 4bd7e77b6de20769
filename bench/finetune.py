"""Benchmark: what the Fine-tuning tab's training path costs, and how long its default runs take.

1. Throughput (training examples/s) of the tab's path — transformers' Trainer with the tab's
   optimizer groups, DataCollatorWithPadding and the live callback — against a plain PyTorch loop
   (the same model built the same way, the same optimizer groups, the same collator, batch size and
   batches: the loop replays the very batches the Trainer drew), on the "top 2 layers" regime of the
   pair task, no evaluation. ROUNDS alternating runs of each; the ratio uses the fastest of each side
   (the least disturbed on a shared machine).
   Goal: ratio >= 0.9.
2. Wall time of each default run the tab offers (frozen head, top 2 layers, LoRA on the pair task;
   LoRA on SmolLM2), models already loaded; the first run includes the base-embedding pass the others
   reuse (the tab caches it per task). Goal: <= 60 s each, frozen head <= 10 s.
3. Peak RSS of the process.

On a machine shared with other busy processes, wall times stretch; `*_cpu_s` (CPU seconds the run
used, all threads) is close to the wall time the same run takes alone at one thread.

Threads: the app's (models.hardware.intra_op_threads). `PYTHONPATH=. .venv/bin/python -m bench.finetune`
"""

from __future__ import annotations

import copy
import os
import resource
import tempfile
import threading
import time
from dataclasses import replace

from bench.in_process import offline_registry

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROUNDS = 3
STEPS = 20
BATCH = 16


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _throughput(encoder, tokenizer, task) -> dict:
    import torch
    from transformers import PrinterCallback, TrainerCallback

    class StepClock(TrainerCallback):
        """The time of each step's end; `steady_s` runs from the first step's end to the last one's.
        The Trainer calls on_step_end; the plain loop calls it by hand."""

        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, *args, **kwargs) -> None:
            self.ends.append(time.perf_counter())

        def steady_s(self) -> float:
            return self.ends[-1] - self.ends[0]

    from models.finetune.classifier import _datasets
    from models.finetune.control import seeded
    from models.finetune.embeddings import MeteredCollator
    from models.finetune.encoder import TOP_LAYERS, Regime, build
    from models.finetune.trainer import LiveCallback, LoopTrainer, training_arguments

    regime = Regime(TOP_LAYERS, layers=2)
    train_set, _ = _datasets(task, tokenizer, {}, regime)
    drawn: list[list[dict]] = []  # the examples of each batch the Trainer drew, replayed by the plain loop

    def trainer_path() -> tuple[float, float, int]:
        with seeded(0):
            model = build(encoder, len(task.labels), task.is_pair, regime)
        metered = MeteredCollator(tokenizer, task.is_pair)
        drawn.clear()

        def collator(features):
            drawn.append(features)
            return metered(features)

        callback = LiveCallback(model, lambda event: None, threading.Event(), "accuracy", dict)
        clock = StepClock()
        with tempfile.TemporaryDirectory() as out:
            args = training_arguments(out, optimizer="adamw", learning_rate=2e-3, steps=STEPS, batch_size=BATCH,
                                      seed=0, eval_every=STEPS + 1)
            args = replace(args, eval_strategy="no", eval_on_start=False)
            with seeded(0):
                trainer = LoopTrainer(model=model, args=args, train_dataset=train_set, data_collator=collator,
                                      callbacks=[callback, clock])
                trainer.remove_callback(PrinterCallback)  # as models.finetune.trainer.run_trainer does
            start, cpu = time.perf_counter(), time.process_time()
            trainer.train()
            return time.perf_counter() - start, time.process_time() - cpu, metered.real, clock.steady_s()

    def plain_loop() -> tuple[float, float, int]:
        with seeded(0):
            model = build(encoder, len(task.labels), task.is_pair, regime)
        collator = MeteredCollator(tokenizer, task.is_pair)
        new = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("head.")]
        old = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
        optimizer = torch.optim.AdamW([{"params": new, "lr": 2e-3}, {"params": old, "lr": 2e-4}], weight_decay=0.0)
        model.train()
        clock = StepClock()
        start, cpu = time.perf_counter(), time.process_time()
        for features in drawn[:STEPS]:
            batch = collator(features)
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            clock.on_step_end()
        return time.perf_counter() - start, time.process_time() - cpu, collator.real, clock.steady_s()

    trainer_path(), plain_loop()  # warm-up
    trainer_times, plain_times = [], []
    for _ in range(ROUNDS):
        trainer_times.append(trainer_path())
        plain_times.append(plain_loop())
    examples = STEPS * BATCH
    wall_t, wall_p = min(t[0] for t in trainer_times), min(t[0] for t in plain_times)
    cpu_t, cpu_p = min(t[1] for t in trainer_times), min(t[1] for t in plain_times)
    return {"throughput_steps": STEPS, "throughput_batch": BATCH,
            "trainer_examples_per_s": round(examples / wall_t, 1),
            "plain_loop_examples_per_s": round(examples / wall_p, 1),
            # the Trainer's dataloader collates one batch ahead: its count has one batch more than it trained on
            "trainer_collated_real_tokens": trainer_times[0][2], "plain_loop_real_tokens": plain_times[0][2],
            "ratio_trainer_over_plain": round(wall_p / wall_t, 3),
            # steps 2..STEPS only: the rate once training runs, without the Trainer's one-time set-up
            # (optimizer, dataloader, callbacks) that the plain loop does before its clock starts
            "steady_trainer_examples_per_s": round((STEPS - 1) * BATCH / min(t[3] for t in trainer_times), 1),
            "steady_plain_loop_examples_per_s": round((STEPS - 1) * BATCH / min(t[3] for t in plain_times), 1),
            "steady_ratio_trainer_over_plain": round(min(t[3] for t in plain_times) / min(t[3] for t in trainer_times),
                                                     3),
            "ratio_trainer_over_plain_cpu_time": round(cpu_p / cpu_t, 3)}


def main() -> dict:
    import torch

    from models.finetune import classifier as clf
    from models.finetune import lora_chat
    from models.finetune.data import PAIRS, load_bundled
    from models.finetune.embeddings import EmbeddingCache
    from models.finetune.encoder import Regime
    from tabs.finetune import REGIME_DEFAULTS

    settings, registry = offline_registry()
    encoder, lm = registry.encoder_with_attention(), registry.chat_model()
    tokenizer = copy.deepcopy(encoder.tokenizer)
    task = load_bundled(PAIRS)
    figures: dict = {"threads": torch.get_num_threads(), "rss_after_loading_mb": round(_peak_rss_mb())}
    cache = EmbeddingCache()
    runs = [("frozen_cold", "frozen")] + [(kind.replace(" ", "_"), kind) for kind in REGIME_DEFAULTS]
    for name, kind in runs:  # the first run embeds every sentence once (the tab caches it per task)
        lr, steps = REGIME_DEFAULTS[kind]
        start, cpu = time.perf_counter(), time.process_time()
        run = clf.train_classifier(encoder.model, tokenizer, task, clf.RunConfig(Regime(kind), learning_rate=lr,
                                                                                 steps=steps), cache=cache)
        figures[f"default_{name}_s"] = round(time.perf_counter() - start, 1)
        figures[f"default_{name}_cpu_s"] = round(time.process_time() - cpu, 1)
        figures[f"default_{name}_accuracy"] = round(run.final.accuracy, 4)
        figures["zero_shot_accuracy"] = round(run.baseline.accuracy, 4)
    start, cpu = time.perf_counter(), time.process_time()
    lora = lora_chat.train_lora(lm, lora_chat.LoraSettings())
    figures["default_lora_smollm2_s"] = round(time.perf_counter() - start, 1)
    figures["default_lora_smollm2_cpu_s"] = round(time.process_time() - cpu, 1)
    figures["lora_smollm2_heldout_loss"] = [round(v, 3) for v in lora.heldout_loss]
    figures.update(_throughput(encoder.model, tokenizer, task))
    figures["peak_rss_mb"] = round(_peak_rss_mb())
    figures["goals"] = "trainer/plain >= 0.9; each default run <= 60 s, frozen head <= 10 s"
    return figures


if __name__ == "__main__":
    print(main())

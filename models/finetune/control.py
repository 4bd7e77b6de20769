"""What a fine-tuning run shares before any training library loads: the seeded start, Stop before
the first step, the optimizer names and which parameters are new.

transformers' Trainer pulls in peft (and with it torchao): about ten seconds of imports. The tab,
its settings and its limits need none of it, so models/finetune/trainer.py is imported only when
a run starts, and the app's page is up without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from models.chat import SEEDED_SAMPLING

PRETRAINED_LR_FACTOR = 0.1
OPTIMIZERS = {"adamw": "adamw_torch", "sgd": "sgd"}
Emit = Callable[[dict], None]


class TrainingStopped(RuntimeError):
    """Stop was pressed before the first training step: there is no model to keep."""


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch for building a model (random initial weights) and a Trainer.

    torch's global generator is shared by the whole process, and the chat tabs' seeded sampling
    draws from it while holding SEEDED_SAMPLING: take the same lock, so neither run changes the
    other's random numbers. Held only while weights are created, never during training.
    """
    from transformers import set_seed  # with the Trainer's modules: loaded by the first run

    with SEEDED_SAMPLING:
        set_seed(seed)
        yield


def is_new(name: str) -> bool:
    """Parameters that did not come with the pretrained model: the head and LoRA adapters."""
    return name.startswith("head.") or "lora_" in name

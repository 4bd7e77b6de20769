"""Sentences to vectors in padded batches, counting the padding; the base model's embeddings of a task.

What it teaches: a batch is a rectangle, so shorter sentences are padded to the longest one.
DataCollatorWithPadding pads each batch only as far as its own longest sentence (dynamic
padding); padding every sentence to a fixed length instead wastes compute on pad tokens that
the attention mask then ignores. The meter counts real, dynamically padded and fixed-length tokens.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch
from transformers import DataCollatorWithPadding

from models.finetune.control import TrainingStopped
from models.finetune.data import MAX_TEXT_TOKENS, Task
from models.finetune.encoder import mean_pool
from models.finetune.metrics import cosine

TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def tokenize(tokenizer, text: str) -> dict:
    """Token ids of one sentence, cut at MAX_TEXT_TOKENS, unpadded (the collator pads per batch)."""
    return dict(tokenizer(text, truncation=True, max_length=MAX_TEXT_TOKENS))


class MeteredCollator:
    """DataCollatorWithPadding for one sentence, or for each side of a pair (keys `*_b`), that
    counts the tokens it produced: real ones, with dynamic padding, and with fixed-length padding."""

    def __init__(self, tokenizer, pair: bool, fixed_length: int = MAX_TEXT_TOKENS):
        self.pad = DataCollatorWithPadding(tokenizer)
        self.pair, self.fixed_length = pair, fixed_length
        self.real = self.dynamic = self.fixed = 0

    def __call__(self, features: list[dict]) -> dict:
        batch = {}
        for suffix in ("", "_b") if self.pair else ("",):
            part = [{key: f[key + suffix] for key in TOKEN_KEYS if key + suffix in f} for f in features]
            padded = self.pad(part)
            self.real += sum(len(p["input_ids"]) for p in part)
            self.dynamic += padded["input_ids"].numel()
            self.fixed += len(part) * self.fixed_length
            batch.update({key + suffix: value for key, value in padded.items()})
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch

    def stats(self) -> dict:
        return {"real_tokens": self.real, "dynamic_tokens": self.dynamic, "fixed_tokens": self.fixed,
                "fixed_length": self.fixed_length,
                "saved_vs_fixed": round(1 - self.dynamic / self.fixed, 4) if self.fixed else 0.0}


@torch.no_grad()
def embed_texts(encoder, tokenizer, texts: list[str], *, batch_size: int = 64, meter: MeteredCollator | None = None,
                stop: threading.Event | None = None, as_tensor: bool = False):
    """Unit-length mean-pooled embeddings of `texts` (n, hidden). `encoder` is a transformer or a
    SentenceClassifier (anything with `.embed`)."""
    collate = meter or MeteredCollator(tokenizer, pair=False)
    out = []
    for i in range(0, len(texts), batch_size):
        if stop is not None and stop.is_set():
            raise TrainingStopped("Stopped before training began: nothing was trained.")
        batch = collate([tokenize(tokenizer, t) for t in texts[i:i + batch_size]])
        if hasattr(encoder, "embed"):
            out.append(encoder.embed(**batch))
        else:
            out.append(mean_pool(encoder, **batch))
    vectors = torch.cat(out) if out else torch.zeros(0)
    return vectors if as_tensor else vectors.numpy()


class EmbeddingCache:
    """The base model's embeddings of a task, by task fingerprint: identical for every user (the base
    model never changes), so a second run on a bundled task skips the encoding pass."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: str, value: dict) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


def base_embeddings(encoder, tokenizer, task: Task, *, cache: EmbeddingCache | None = None,
                    stop: threading.Event | None = None) -> dict:
    """Embeddings of every training and validation sentence by the pretrained encoder (inference
    only: the shared model is read, never changed), with the pairs' cosines and the padding meter."""
    key = f"{task.fingerprint}:{id(encoder)}"
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        return cached
    meter = MeteredCollator(tokenizer, pair=False)
    splits = (("train", task.train), ("validation", task.validation))
    # A sentence can appear in several pairs: encode each distinct one once.
    texts = list(dict.fromkeys(t for _, examples in splits for ex in examples for t in (ex.text, ex.text_b) if t))
    vectors = embed_texts(encoder, tokenizer, texts, meter=meter, stop=stop)
    row = {text: i for i, text in enumerate(texts)}
    result: dict = {"padding": meter.stats()}
    for split, examples in splits:
        result[f"u_{split}"] = vectors[[row[ex.text] for ex in examples]]
        if task.is_pair:
            result[f"v_{split}"] = vectors[[row[ex.text_b] for ex in examples]]
            result[f"cos_{split}"] = cosine(result[f"u_{split}"], result[f"v_{split}"])
    if cache is not None:
        cache.put(key, result)
    return result

"""Load-once caches for what the Quantized tab derives from a model: builds, logits, vectors, kernels.

The model registry only loads models. Everything computed from a loaded model (a quantized copy,
reference logits, embeddings of the bundled set, a profiler run) lives here instead, in one typed
cache per kind, keyed by (model key, scheme key). Each value is built once per process even when
many requests ask for it at the same time (one lock per key). A build that fails caches nothing
and deletes nothing: the next request tries again, and the model's files are never touched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from models.registry import ModelRegistry

if TYPE_CHECKING:
    import numpy as np
    import torch

    from models.quant.schemes import Built

V = TypeVar("V")
Key = tuple[str, str]  # (model key, scheme key)


class LoadOnce(Generic[V]):
    """A thread-safe map from (model key, scheme key) to a value built on first request."""

    def __init__(self, kind: str):
        self.kind = kind  # what the values are, for messages and logs
        self._values: dict[Key, V] = {}
        self._locks: dict[Key, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Key, build: Callable[[], V]) -> V:
        """The cached value for key, calling `build()` once if there is none; its errors propagate."""
        if key in self._values:
            return self._values[key]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = build()
            return self._values[key]

    def __contains__(self, key: Key) -> bool:
        return key in self._values


@dataclass
class QuantCache:
    """The registry whose models are compared, and one cache per kind of derived artefact."""

    registry: ModelRegistry
    builds: LoadOnce[Built] = field(default_factory=lambda: LoadOnce("fp32 or quantized build"))
    reference_logits: LoadOnce[tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=lambda: LoadOnce("reference-text ids and logits"))
    vectors: LoadOnce[tuple[np.ndarray, np.ndarray]] = field(
        default_factory=lambda: LoadOnce("sentence and query embeddings"))
    kernels: LoadOnce[str] = field(default_factory=lambda: LoadOnce("kernels of one forward pass"))

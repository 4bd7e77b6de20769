"""Load-once caches for what the Quantized tab derives from a model: builds, logits, vectors, kernels.

The model registry only loads models. Everything computed from a loaded model (a quantized copy,
reference logits, embeddings of the bundled set, a profiler run, a GGUF ladder row) lives here
instead, in one typed cache per kind, keyed by (model key, scheme key). Each value is built once
per process even when many requests ask for it at the same time (one lock per key). A build that
fails caches nothing and deletes nothing: the next request tries again, and the model's files are
never touched. Measurements that take seconds to minutes (ladder and sensitivity rows) are also
kept on disk (`DiskRecords`, under the cache dir), keyed by everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from models.registry import ModelRegistry

if TYPE_CHECKING:
    import numpy as np
    import torch

    from models.quant.schemes import Built
    from models.quant.workbench import Workbench

log = logging.getLogger(__name__)
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


class DiskRecords:
    """JSON records in a folder, one file per key (a dict of everything the value depends on).

    A record whose key differs (another model file, text, recipe or library version) or that
    cannot be read is recomputed; writes go through a temporary file and an atomic rename, so
    two processes never see half a record. A folder that cannot be written only costs the reuse.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, key: dict) -> Path:
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        return self.folder / f"{digest}.json"

    def read(self, key: dict) -> dict | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data["value"] if isinstance(data, dict) and data.get("key") == key else None

    def write(self, key: dict, value: dict) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"key": key, "value": value}), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            log.warning("Could not keep a quantization record in %s", path.parent, exc_info=True)
            tmp.unlink(missing_ok=True)

    def get(self, key: dict, compute: Callable[[], dict]) -> dict:
        found = self.read(key)
        if found is not None:
            return found
        value = compute()
        self.write(key, value)
        return value


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
    workbenches: LoadOnce[Workbench] = field(default_factory=lambda: LoadOnce("private fp32 copy for GGUF runs"))
    measurements: LoadOnce[dict] = field(default_factory=lambda: LoadOnce("ladder and sensitivity rows"))
    records_dir: Path | None = None  # default: <cache dir>/quant/records (a bench measures from empty)

    @property
    def disk(self) -> DiskRecords:
        return DiskRecords(self.records_dir or self.registry.settings.cache_dir / "quant" / "records")

    def measured(self, key: Key, depends_on: dict, compute: Callable[[], dict]) -> dict:
        """A measurement kept in this process and on disk; `depends_on` must name every input."""
        return self.measurements.get(key, lambda: self.disk.get({**depends_on, "what": list(key)}, compute))

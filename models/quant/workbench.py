"""A private copy of a model whose weights are swapped for their GGUF round trips.

The shared model (the registry's) serves every tab and is never written to. The workbench is a
copy of its modules whose parameters *point at* the shared model's tensors (no second 540 MB of
float32), and `apply(plan)` re-points each one either at the shared original or at a new tensor
holding what the plan's format gives back after quantize -> dequantize. Nothing ever writes into
a parameter in place (inference only), so the shared tensors stay untouched. One lock: an
experiment (apply, then forward passes) holds it from start to end.

Quantizing is the slow part (NumPy, ~1-8 s of CPU per format for SmolLM2), so:
- tensors are quantized on a small thread pool (NumPy releases the GIL inside its loops);
- the stored bytes of recent (tensor, format) pairs are kept (a bounded memo, MEMO_BYTES), so
  the per-group sensitivity and the keep-in-full toggles only dequantize, which is cheaper;
- a tensor already holding the plan's values is not touched again.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from models.quant import gguf_formats as gf
from models.quant.tensors import Plan, group_of

MEMO_BYTES = 400_000_000  # stored bytes kept for reuse: about 3 formats of SmolLM2's linear layers
Progress = Callable[[float, str], None]


class Workbench:
    """`module` is the private copy; `shapes` lists every parameter (tied ones once)."""

    def __init__(self, shared: torch.nn.Module, threads: int = 2):
        self._originals = dict(shared.named_parameters())  # read-only: the shared model's tensors
        self.module = copy.deepcopy(shared).eval()
        self._params = dict(self.module.named_parameters())  # tied weights appear once, as in shared
        with torch.no_grad():
            for name, param in self._params.items():
                param.data = self._originals[name].data  # share, don't copy (the copy's memory is freed)
        self.shapes = {name: tuple(p.shape) for name, p in self._originals.items()}
        self.lock = threading.Lock()
        self._state: dict[str, str | None] = dict.fromkeys(self._params)  # format name each holds
        self._memo: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._memo_bytes = 0
        self._memo_lock = threading.Lock()
        self._threads = max(1, threads)

    def _packed(self, name: str, fmt: gf.Format) -> np.ndarray:
        key = (name, fmt.name)
        with self._memo_lock:  # the pool's threads share the memo
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        packed = gf.quantize(self._originals[name].detach().numpy(), fmt)
        with self._memo_lock:
            self._memo[key] = packed
            self._memo_bytes += packed.nbytes
            while self._memo_bytes > MEMO_BYTES and len(self._memo) > 1:
                _, dropped = self._memo.popitem(last=False)
                self._memo_bytes -= dropped.nbytes
        return packed

    def _round_trip(self, name: str, fmt: gf.Format) -> np.ndarray:
        return gf.dequantize(self._packed(name, fmt), fmt)

    def apply(self, plan: Plan, progress: Progress | None = None) -> None:
        """Make the copy's weights what the plan says. Call with `lock` held."""
        report = progress or (lambda fraction, text: None)
        with torch.no_grad():
            for name, param in self._params.items():
                if plan.get(name) is None and self._state[name] is not None:
                    param.data = self._originals[name].data
                    self._state[name] = None
            todo = [(n, f) for n, f in plan.items() if f is not None and self._state[n] != f.name]
            if not todo:
                return
            with ThreadPoolExecutor(self._threads) as pool:
                futures = [(n, f, pool.submit(self._round_trip, n, f)) for n, f in todo]
                for i, (name, fmt, future) in enumerate(futures):
                    self._params[name].data = torch.from_numpy(future.result().reshape(self.shapes[name]))
                    self._state[name] = fmt.name
                    if i % 16 == 0:
                        report(i / len(futures), f"{fmt.name}: {group_of(name)} ({i + 1}/{len(futures)} tensors)")

    def reset(self) -> None:
        """Every weight back to float32 (call with `lock` held)."""
        self.apply({})

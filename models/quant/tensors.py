"""Which weight matrices a model has, which group each belongs to, and which GGUF format each gets.

A *plan* maps every parameter name to a `Format` (stored that way, then read back) or None (kept
in float32). Three recipes build plans:

- `ladder_plan`: llama-quantize's recipe for a Q*_0 / Q*_1 file without an importance matrix:
  every linear layer in the format; the token embedding (SmolLM2 ties it to the output layer, so
  it is also the lm_head) gets llama.cpp's output type Q6_K, whose 256-blocks do not fit rows of
  576 (MiniLM: 384), so llama.cpp stores it as Q8_0, which is what the packaged GGUF holds. BF16
  keeps everything in BF16. Norms, biases and position embeddings stay F32.
- `group_plan`: one group in the format, everything else float32 (per-group sensitivity).
- `all_but_plan`: every group, embeddings included, in the format except the ones kept.

Any tensor whose rows are not a whole number of the format's blocks takes llama.cpp's fallback
(gguf_formats.storage_format).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from models.quant import gguf_formats as gf
from models.registry import CHAT

# Group key -> (chat label, encoder label). The encoder has no gate projection.
GROUP_LABELS = {
    "embeddings": ("token embeddings / lm_head (tied)", "word embeddings"),
    "q_proj": ("attention q_proj", "attention query"),
    "k_proj": ("attention k_proj", "attention key"),
    "v_proj": ("attention v_proj", "attention value"),
    "o_proj": ("attention o_proj", "attention output dense"),
    "gate_proj": ("MLP gate_proj", ""),
    "up_proj": ("MLP up_proj", "MLP intermediate dense"),
    "down_proj": ("MLP down_proj", "MLP output dense"),
}
_PATTERNS = (  # first match wins; encoder (BERT) names first where they overlap
    ("embeddings", r"(embed_tokens|word_embeddings|lm_head)\.weight$"),
    ("q_proj", r"(q_proj|attention\.self\.query)\.weight$"),
    ("k_proj", r"(k_proj|attention\.self\.key)\.weight$"),
    ("v_proj", r"(v_proj|attention\.self\.value)\.weight$"),
    ("o_proj", r"(o_proj|attention\.output\.dense)\.weight$"),
    ("gate_proj", r"gate_proj\.weight$"),
    ("up_proj", r"(up_proj|intermediate\.dense)\.weight$"),
    ("down_proj", r"(down_proj|layer\.\d+\.output\.dense)\.weight$"),
)
Plan = dict[str, "gf.Format | None"]


def group_of(name: str) -> str | None:
    """The group of a parameter, or None for what every recipe keeps in F32 (norms, biases, ...)."""
    for group, pattern in _PATTERNS:
        if re.search(pattern, name):
            return group
    return None


def label(group: str, model_key: str) -> str:
    chat, encoder = GROUP_LABELS[group]
    return chat if model_key == CHAT else encoder


def groups_of(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The groups this model has, in GROUP_LABELS order."""
    present = {group_of(n) for n in shapes}
    return [g for g in GROUP_LABELS if g in present]


def _plan(shapes: dict[str, tuple[int, ...]], choose: Callable[[str], gf.Format | None]) -> Plan:
    plan: Plan = {}
    for name, shape in shapes.items():
        group = group_of(name)
        fmt = choose(group) if group else None
        plan[name] = gf.storage_format(fmt, shape[-1]) if fmt else None
    return plan


def ladder_plan(shapes: dict[str, tuple[int, ...]], fmt: gf.Format) -> Plan:
    embeddings = fmt if fmt.name == "BF16" else gf.Q8_0
    return _plan(shapes, lambda group: embeddings if group == "embeddings" else fmt)


def group_plan(shapes: dict[str, tuple[int, ...]], fmt: gf.Format, group: str) -> Plan:
    return _plan(shapes, lambda g: fmt if g == group else None)


def all_but_plan(shapes: dict[str, tuple[int, ...]], fmt: gf.Format, kept: set[str]) -> Plan:
    return _plan(shapes, lambda g: None if g in kept else fmt)


def summary(plan: Plan, shapes: dict[str, tuple[int, ...]]) -> dict:
    """File size (tensor data; float32 where the plan keeps a tensor), bits per weight of the
    quantized tensors, and where llama.cpp's row fallback changed a format (group -> format)."""
    size = quantized_bits = quantized_weights = weights = 0
    stored: dict[str, set[str]] = {}
    for name, shape in shapes.items():
        fmt = plan.get(name)
        size += gf.stored_bytes(shape, fmt or gf.F32)
        weights += int(np.prod(shape))
        if fmt is not None:
            quantized_bits += gf.stored_bytes(shape, fmt) * 8
            quantized_weights += int(np.prod(shape))
            stored.setdefault(group_of(name), set()).add(fmt.name)
    return {"size_bytes": size, "weights": weights,
            "quantized_bpw": quantized_bits / quantized_weights if quantized_weights else 32.0,
            "stored_as": {group: sorted(names) for group, names in stored.items()}}

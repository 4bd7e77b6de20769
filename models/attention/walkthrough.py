"""How one head computes its attention, step by step, with the model's own numbers.

For one layer, head and query token: the scores q·k for every key, the scaling by 1/√d,
the mask (causal for a decoder; -inf above the diagonal), and the softmax. A forward
pre-hook on the layer's attention module captures exactly what the module received (hidden
states, mask, rotary position embeddings); Q and K are recomputed from those with the
module's own projection weights, and the result is checked against the attention weights
the same forward pass returned.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
import torch

from models.attention.capture import AttentionData, attention_modules, head_dim, thread_hook

MASKED = -1e30  # additive mask values below this mean "cannot attend" (shown as -inf)


@dataclass
class WalkThrough:
    layer: int
    head: int
    query_index: int
    query_label: str
    head_dim: int
    scale: float  # the factor applied to q·k (1/√d)
    rotary: bool  # Q and K were rotated by RoPE before the dot product
    keys: list[str]
    dot: list[float]  # q·k
    scaled: list[float]  # q·k × scale
    mask: list[float]  # 0 or -inf
    exp: list[float]  # exp(score - max score), before normalising
    softmax: list[float]
    model: list[float]  # the weights the model itself returned for this row

    @property
    def max_abs_diff(self) -> float:
        return float(np.max(np.abs(np.array(self.softmax) - np.array(self.model))))

    def rows(self) -> list[list]:
        """Table rows: key, q·k, scaled, mask, scaled+mask, exp, softmax, model weight."""
        out = []
        for i, key in enumerate(self.keys):
            masked = self.mask[i] == -math.inf
            out.append([i, key, round(self.dot[i], 4), round(self.scaled[i], 4),
                        "-inf" if masked else 0.0, "-inf" if masked else round(self.scaled[i], 4),
                        round(self.exp[i], 6), round(self.softmax[i], 6), round(self.model[i], 6)])
        return out


def _capture(model, module, inputs) -> dict:
    captured: dict = {}

    def before(mod, args, kwargs):
        captured["hidden"] = kwargs.get("hidden_states", args[0] if args else None)
        captured["kwargs"] = kwargs

    def after(mod, args, kwargs, output):
        captured["weights"] = output[1]

    with thread_hook(module, before, "forward_pre", with_kwargs=True), \
            thread_hook(module, after, "forward", with_kwargs=True), torch.no_grad():
        model(**inputs, output_attentions=True)
    if captured.get("weights") is None:
        raise RuntimeError("The attention module returned no weights; load the model with eager attention.")
    return captured


def _queries_keys(module, hidden: torch.Tensor, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(Q, K) as (heads, n, d) and (kv_heads, n, d), computed like the module's forward."""
    d = head_dim(module)
    shape = (*hidden.shape[:-1], -1, d)
    if hasattr(module, "q_proj"):  # Llama-style: optional q/k norm, then rotary embeddings
        q, k = module.q_proj(hidden).view(shape), module.k_proj(hidden).view(shape)
        if hasattr(module, "q_norm"):
            q, k = module.q_norm(q), module.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        rotary = kwargs.get("position_embeddings") is not None
        if rotary:
            apply_rope = sys.modules[type(module).__module__].apply_rotary_pos_emb
            q, k = apply_rope(q, k, *kwargs["position_embeddings"])
        return q[0], k[0], rotary
    q = module.query(hidden).view(shape).transpose(1, 2)
    k = module.key(hidden).view(shape).transpose(1, 2)
    return q[0], k[0], False


def walk_through(model, data: AttentionData, layer: int, head: int, query_index: int) -> WalkThrough:
    """The Q·Kᵀ / scale / mask / softmax steps of (layer, head) for one query token."""
    if not 0 <= layer < data.n_layers:
        raise ValueError(f"Layer must be between 0 and {data.n_layers - 1}.")
    if not 0 <= head < data.n_heads:
        raise ValueError(f"Head must be between 0 and {data.n_heads - 1}.")
    if not 0 <= query_index < data.n_tokens:
        raise ValueError(f"The query token must be between 0 and {data.n_tokens - 1}.")
    module = attention_modules(model)[layer]
    captured = _capture(model, module, data.model_inputs())
    with torch.no_grad():
        q, k, rotary = _queries_keys(module, captured["hidden"], captured["kwargs"])
        groups = q.shape[0] // k.shape[0]  # grouped-query attention: heads share a K head
        scale = float(getattr(module, "scaling", head_dim(module) ** -0.5))
        dot = k[head // groups] @ q[head, query_index]
        scaled = dot * scale
        mask = captured["kwargs"].get("attention_mask")
        if mask is None:
            row_mask = torch.zeros_like(scaled)
        else:
            m = mask[0, 0]
            row_mask = (m[query_index] if m.shape[0] > 1 else m[0])[: scaled.shape[0]].to(scaled.dtype)
        blocked = row_mask < MASKED
        scores = torch.where(blocked, torch.tensor(-math.inf), scaled + row_mask)
        exp = torch.exp(scores - scores.max())
        softmax = exp / exp.sum()
        model_row = captured["weights"][0, head, query_index]
    return WalkThrough(
        layer=layer, head=head, query_index=query_index, query_label=data.labels[query_index],
        head_dim=q.shape[-1], scale=scale, rotary=rotary, keys=list(data.labels),
        dot=dot.tolist(), scaled=scaled.tolist(), mask=[-math.inf if b else 0.0 for b in blocked.tolist()],
        exp=exp.tolist(), softmax=softmax.tolist(), model=model_row.float().tolist(),
    )

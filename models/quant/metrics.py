"""What quantization costs and what it saves, as plain numbers.

Quality follows llama.cpp's `perplexity --kl-divergence` report:
- perplexity  = exp(mean negative log-likelihood of each next token),
- mean KLD    = mean over positions of KL(P_full || P_quant) of the next-token distributions,
- same top p  = % of positions where both models put the same token first.
For an encoder: mean cosine between full and quantized embeddings, and overlap@k of the
top-k retrieval results. Sizes count the bytes `torch.save` really writes (tied tensors once)
and split them into embeddings / linear layers / lm_head / the rest.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict

import numpy as np
import torch

# ---- quality: causal LM ------------------------------------------------------------------


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """[T, V] logits -> [T, V] float32 log-probabilities."""
    return torch.log_softmax(logits.float(), dim=-1)


def perplexity(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """PPL of token ids[1:] given logits[:-1] (logits[t] predicts ids[t+1])."""
    lp = log_probs(logits[:-1])
    nll = -lp.gather(-1, ids[1:].unsqueeze(-1)).squeeze(-1)
    return float(torch.exp(nll.mean()))


def kl_per_position(base_lp: torch.Tensor, other_lp: torch.Tensor) -> torch.Tensor:
    """KL(P_base || P_other) at each position, from log-probabilities; >= 0 up to rounding."""
    return (base_lp.exp() * (base_lp - other_lp)).sum(-1).clamp_min(0.0)


def top1_agreement(base_lp: torch.Tensor, other_lp: torch.Tensor) -> float:
    """Percentage of positions whose most likely token is the same in both models."""
    return float((base_lp.argmax(-1) == other_lp.argmax(-1)).float().mean() * 100.0)


def lm_quality(base_logits: torch.Tensor, other_logits: torch.Tensor, ids: torch.Tensor) -> dict:
    """PPL of the other model, mean/max KL against the base, top-1 agreement (scored on logits[:-1])."""
    base_lp, other_lp = log_probs(base_logits[:-1]), log_probs(other_logits[:-1])
    kl = kl_per_position(base_lp, other_lp)
    return {
        "perplexity": perplexity(other_logits, ids),
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
        "top1_agreement_pct": top1_agreement(base_lp, other_lp),
        "positions": int(kl.numel()),
    }


# ---- quality: encoder --------------------------------------------------------------------


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of matching rows of two [N, D] embedding matrices."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).mean())


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k most similar corpus rows for each query (cosine), best first."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    scores = q @ c.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def overlap_at_k(base_hits: np.ndarray, other_hits: np.ndarray) -> float:
    """Mean fraction (0-100 %) of each query's top-k results that both models return."""
    k = base_hits.shape[1]
    shared = [len(set(a) & set(b)) / k for a, b in zip(base_hits.tolist(), other_hits.tolist(), strict=False)]
    return float(np.mean(shared) * 100.0)


# ---- sizes -------------------------------------------------------------------------------


def serialized_bytes(state: dict) -> int:
    """Bytes `torch.save(state)` writes (a tied tensor is stored once), via a temporary file."""
    fd, path = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    try:
        torch.save(state, path)
        return os.path.getsize(path)
    finally:
        os.unlink(path)


def _tensors(value):
    """Tensors inside a state-dict value (quantized Linear layers store a (weight, bias) tuple)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor's data takes; quantized and torchao tensors count their real payload."""
    if t.is_quantized:
        scales = t.q_per_channel_scales().numel() * 12 if t.qscheme() in (
            torch.per_channel_affine, torch.per_channel_symmetric) else 12
        return t.numel() * t.element_size() + scales
    if type(t) is not torch.Tensor and hasattr(t, "__tensor_flatten__"):  # torchao subclass
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def _storage_key(t: torch.Tensor):
    try:
        return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
    except Exception:  # quantized / subclass tensors: identity is enough (never tied here)
        return id(t)


def part_of(name: str) -> str:
    """Which part of a transformer a state-dict entry belongs to."""
    lowered = name.lower()
    if "lm_head" in lowered:
        return "lm_head"
    if "embed" in lowered:
        return "embeddings"
    if "norm" in lowered:
        return "norms & other"
    return "linear layers"


def size_breakdown(state: dict) -> dict[str, int]:
    """Bytes per part of the model; a tensor shared by two names (a tied lm_head) counts once,
    under the first name (the embeddings)."""
    seen: set = set()
    parts: dict[str, int] = defaultdict(int)
    for name, value in state.items():
        for t in _tensors(value):
            key = _storage_key(t)
            if key in seen:
                continue
            seen.add(key)
            parts[part_of(name)] += tensor_bytes(t)
    return dict(parts)


def is_lm_head_tied(model: torch.nn.Module) -> bool:
    """True when the output layer still shares its weight tensor with the input embeddings."""
    head = getattr(model, "lm_head", None)
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if head is None or emb is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        return False
    try:
        return head.weight.data_ptr() == emb.weight.data_ptr()
    except Exception:
        return False


def onnx_breakdown(path: str) -> dict[str, int]:
    """Bytes per part of an ONNX file's weights (initializers); int8 ones are quantized linears."""
    import onnx
    from onnx import numpy_helper

    parts: dict[str, int] = defaultdict(int)
    for init in onnx.load(path).graph.initializer:
        nbytes = numpy_helper.to_array(init).nbytes
        name = init.name.lower()
        if "embed" in name:
            parts["embeddings"] += nbytes
        elif init.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) or "matmul" in name:
            parts["linear layers"] += nbytes
        elif nbytes > 4096 and ("dense" in name or "query" in name or "key" in name or "value" in name):
            parts["linear layers"] += nbytes
        else:
            parts["norms & other"] += nbytes
    return dict(parts)


"""Attention weights and tokens from an encoder (sentence or pair) or a decoder (prompt + generation).

`encoder_attention()` and `decoder_attention()` run one forward pass with
`output_attentions=True` (the registry loads both models with eager attention: sdpa returns
none) and return an `AttentionData`: plain token lists and a (layers, heads, n, n) numpy
array, so views, statistics and tests never touch tensors. Inputs longer than the limit are
cut, with a notice saying so.

Also here: locating each layer's attention module (for the Q·K walk-through and the head
knock-out) and `thread_hook`, which confines a hook on a shared model to the calling thread.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from models.chat import encode_chat, user_message

HEATMAP_LIMIT = 256  # tokens the model sees (the heatmap handles this many)
VIEW_LIMIT = 64  # tokens drawn by the bertviz views (they get slow past this)
MAX_NEW_TOKENS = 16


@dataclass
class AttentionData:
    """One input's attention: `attentions[layer, head, query, key]`, rows sum to 1."""

    kind: str  # "encoder" | "decoder"
    model_name: str
    tokens: list[str]  # raw tokenizer tokens (bertviz prettifies them itself)
    labels: list[str]  # readable labels for plots and tables
    attentions: np.ndarray
    input_ids: list[int]
    segment_ids: list[int] | None = None  # token_type_ids of a sentence pair
    sentence_b_start: int | None = None
    generated_start: int | None = None  # index of the first generated token (decoder)
    sep_positions: list[int] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    scale: float = 1.0  # weight = attentions x scale (1/255 once `compact` stored them as uint8)

    @property
    def n_layers(self) -> int:
        return self.attentions.shape[0]

    @property
    def n_heads(self) -> int:
        return self.attentions.shape[1]

    @property
    def n_tokens(self) -> int:
        return self.attentions.shape[2]

    def head_matrix(self, layer: int, head: int | None) -> np.ndarray:
        """The (n, n) attention of one head, or the average over the layer's heads (head=None)."""
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"Layer must be between 0 and {self.n_layers - 1}.")
        if head is None:
            return self.attentions[layer].mean(0, dtype=np.float32) * self.scale
        if not 0 <= head < self.n_heads:
            raise ValueError(f"Head must be between 0 and {self.n_heads - 1}.")
        return self.attentions[layer, head].astype(np.float32) * self.scale

    def compact(self) -> AttentionData:
        """The same data with the weights as uint8 (steps of 1/255), a quarter of float32: what a
        session keeps for its heatmap (SmolLM2 at 256 tokens: 17.7 MB instead of 71 MB)."""
        if self.attentions.dtype == np.uint8:
            return self
        weights = np.clip(np.rint(self.attentions.astype(np.float32) * self.scale * 255), 0, 255).astype(np.uint8)
        return replace(self, attentions=weights, scale=1 / 255)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """The exact tensors the model saw, to run it again (walk-through, knock-out)."""
        ids = torch.tensor([self.input_ids])
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if self.kind == "encoder":
            segments = self.segment_ids or [0] * len(self.input_ids)
            inputs["token_type_ids"] = torch.tensor([segments])
        return inputs

    def for_views(self, limit: int = VIEW_LIMIT) -> tuple[np.ndarray, list[str], int | None, str]:
        """(attentions, tokens, sentence_b_start, notice) cut to the first `limit` tokens for bertviz."""
        n = min(self.n_tokens, limit)
        b_start = self.sentence_b_start if self.sentence_b_start is not None and self.sentence_b_start < n else None
        notice = ""
        if n < self.n_tokens:
            notice = (f"The bertviz views show the first {n} of {self.n_tokens} tokens (they get slow past "
                      f"{limit}); attention to later tokens is not drawn. The heatmap shows all tokens.")
        return self.attentions[:, :, :n, :n].astype(np.float32) * self.scale, self.tokens[:n], b_start, notice

    def to_dict(self, decimals: int = 4) -> dict:
        """JSON-friendly form (what the `attention` API endpoint returns)."""
        return {
            "kind": self.kind,
            "model": self.model_name,
            "layers": self.n_layers,
            "heads": self.n_heads,
            "tokens": self.tokens,
            "labels": self.labels,
            "segment_ids": self.segment_ids,
            "sentence_b_start": self.sentence_b_start,
            "generated_start": self.generated_start,
            "notices": self.notices,
            "attention": np.round(self.attentions.astype(np.float64) * self.scale, decimals).tolist(),
        }


def readable_tokens(tokenizer, tokens: list[str]) -> list[str]:
    """Labels a student can read: byte-level BPE tokens decoded ('Ġcat' -> ' cat'), newlines shown."""
    byte_level = any(t.startswith("Ġ") for t in tokens) or "Ġ" in "".join(tokens)
    labels = []
    for tok in tokens:
        label = tokenizer.convert_tokens_to_string([tok]) if byte_level else tok
        labels.append(label.replace("\n", "⏎").replace("\t", "⇥") or tok)
    return labels


def _forward_attentions(model, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise RuntimeError("The model returned no attention weights; load it with attn_implementation='eager'.")
    return torch.stack([a[0] for a in out.attentions]).float().numpy()


def encoder_attention(encoder, text: str, text_b: str | None = None,
                      max_tokens: int = HEATMAP_LIMIT) -> AttentionData:
    """Attention of a BERT-style encoder on one sentence, or a pair (segment A / B)."""
    text, text_b = (text or "").strip(), (text_b or "").strip() or None
    if not text:
        raise ValueError("Enter a sentence to look at.")
    tok = encoder.tokenizer
    full = tok(text, text_b)["input_ids"]
    enc = tok(text, text_b, truncation="longest_first" if text_b else True, max_length=max_tokens,
              return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    notices = []
    if len(full) > len(ids):
        notices.append(f"The input has {len(full)} tokens; the model saw only the first {len(ids)} "
                       f"(limit {max_tokens}).")
    segments = enc["token_type_ids"][0].tolist() if "token_type_ids" in enc else None
    b_start = segments.index(1) if text_b and segments and 1 in segments else None
    tokens = tok.convert_ids_to_tokens(ids)
    data = AttentionData(
        kind="encoder", model_name=encoder.name, tokens=tokens, labels=readable_tokens(tok, tokens),
        attentions=np.empty((0, 0, 0, 0)), input_ids=ids, segment_ids=segments if text_b else None,
        sentence_b_start=b_start, notices=notices,
        sep_positions=[i for i, t in enumerate(ids) if t == tok.sep_token_id],
    )
    data.attentions = _forward_attentions(encoder.model, data.model_inputs())
    return data


def decoder_attention(lm, prompt: str, new_tokens: int = 0, max_tokens: int = HEATMAP_LIMIT,
                      chat_template: bool = False) -> AttentionData:
    """Attention of a causal LM on a prompt plus `new_tokens` greedily generated tokens.

    Generation is greedy, so the same prompt always shows the same tokens; the attention of
    the generated tokens comes from one forward pass over prompt + generation, which gives the
    same rows as the step-by-step pass with a KV cache (the model is causal).
    """
    prompt = (prompt or "").strip()
    if not prompt:
        raise ValueError("Enter a prompt to look at.")
    new_tokens = max(0, min(int(new_tokens or 0), MAX_NEW_TOKENS))
    tok = lm.tokenizer
    if chat_template:
        ids = encode_chat(tok, user_message(prompt))
    else:
        ids = tok(prompt)["input_ids"]
    notices = []
    budget = max(1, max_tokens - new_tokens)
    if len(ids) > budget:
        notices.append(f"The prompt has {len(ids)} tokens; the model saw only the first {budget} "
                       f"(limit {max_tokens} including {new_tokens} generated).")
        ids = ids[:budget]
    generated_start = None
    if new_tokens:
        prompt_ids = torch.tensor([ids])
        with torch.no_grad():
            out = lm.model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), do_sample=False,
                                    max_new_tokens=new_tokens, pad_token_id=tok.eos_token_id)
        generated = out[0, len(ids):].tolist()
        if generated:
            generated_start = len(ids)
            ids = ids + generated
    tokens = tok.convert_ids_to_tokens(ids)
    data = AttentionData(kind="decoder", model_name=lm.name, tokens=tokens,
                         labels=readable_tokens(tok, tokens), attentions=np.empty((0, 0, 0, 0)),
                         input_ids=ids, generated_start=generated_start, notices=notices)
    data.attentions = _forward_attentions(lm.model, data.model_inputs())
    return data


# ---- attention modules and hooks (shared by the walk-through and the knock-out) ----------

def attention_modules(model) -> list[torch.nn.Module]:
    """Each layer's self-attention module, in layer order (Llama-style or BERT-style)."""
    found = [m for m in model.modules()
             if all(hasattr(m, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj"))
             or all(hasattr(m, a) for a in ("query", "key", "value"))]
    if not found:
        raise ValueError(f"{type(model).__name__}: no attention module with separate Q/K/V projections "
                         "(Llama-style q_proj/k_proj or BERT-style query/key) was found.")
    return found


def output_projections(model) -> list[torch.nn.Linear]:
    """The linear layer after each attention module, whose input holds the heads side by side."""
    projections = [m.o_proj for m in attention_modules(model) if hasattr(m, "o_proj")]
    if projections:
        return projections
    # BERT: BertAttention holds .self (query/key/value) and .output.dense
    projections = [m.output.dense for m in model.modules()
                   if hasattr(m, "self") and hasattr(m.self, "query") and hasattr(m, "output")]
    if not projections:
        raise ValueError(f"{type(model).__name__}: no attention output projection was found.")
    return projections


def head_dim(module) -> int:
    return getattr(module, "head_dim", None) or module.attention_head_size


@contextlib.contextmanager
def thread_hook(module: torch.nn.Module, fn, kind: str = "forward_pre", with_kwargs: bool = False):
    """Register a hook that acts only for the calling thread, and remove it on exit.

    The registry shares one model between all users, so a hook left active for every
    thread would change (or spy on) another user's forward pass running at the same time.
    """
    owner = threading.get_ident()

    def guarded(*args):
        if threading.get_ident() == owner:
            return fn(*args)
        return None

    register = module.register_forward_pre_hook if kind == "forward_pre" else module.register_forward_hook
    handle = register(guarded, with_kwargs=with_kwargs)
    try:
        yield
    finally:
        handle.remove()

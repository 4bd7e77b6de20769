"""Where a token is: rotary position embeddings in SmolLM2, learned position vectors in MiniLM.

What it teaches: attention by itself does not know word order. SmolLM2 rotates each query
and key vector by an angle proportional to its position (RoPE), pair of dimensions by pair of
dimensions at different speeds, so the query·key score of the same two tokens depends on how
far apart they are, and only on that. MiniLM instead adds a learned vector per position
(0-511) to each token embedding; neighbouring positions learned similar vectors, which their
cosine-similarity matrix shows as a bright band along the diagonal.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch

from models.tokens.token_vectors import word_token

MAX_DISTANCE = 2048
MAX_POSITIONS = 512


@dataclass
class RotaryCurve:
    """q·k/√d of one query token and one key token, as the key moves `distance` tokens back."""

    query: str  # the tokens, decoded
    key: str
    layer: int  # 1-based
    distances: list[int]
    scores: np.ndarray  # (query heads, len(distances))
    heads_per_kv: int  # grouped-query attention: this many query heads share one key head

    def as_dict(self) -> dict:
        return {"query": self.query, "key": self.key, "layer": self.layer, "distances": self.distances,
                "scores_per_head": np.round(self.scores, 5).tolist(),
                "mean_score": np.round(self.scores.mean(axis=0), 5).tolist(), "heads_per_kv": self.heads_per_kv}


def _decoder(model):
    inner = getattr(model, "model", model)
    if not hasattr(inner, "rotary_emb") or not hasattr(inner, "layers"):
        raise ValueError(f"{type(model).__name__} has no rotary position embedding to show.")
    return inner


def rotary_scores(lm, query_word: str, key_word: str, layer: int = 1, max_distance: int = 256,
                  key_position: int = 0) -> RotaryCurve:
    """The layer's own q/k projections of the two tokens' input embeddings, rotated by the model's
    own rotary module with the key at `key_position` and the query 0..max_distance tokens later."""
    decoder = _decoder(lm.model)
    layer = max(1, min(int(layer), len(decoder.layers)))
    max_distance = max(1, min(int(max_distance), MAX_DISTANCE))
    block = decoder.layers[layer - 1]
    attention = block.self_attn
    apply_rotary = getattr(sys.modules[type(attention).__module__], "apply_rotary_pos_emb", None)
    if apply_rotary is None:
        raise ValueError(f"{type(attention).__name__} does not use apply_rotary_pos_emb.")
    ids = [word_token(lm.tokenizer, query_word), word_token(lm.tokenizer, key_word)]
    head_dim = attention.head_dim
    with torch.inference_mode():
        hidden = block.input_layernorm(lm.model.get_input_embeddings().weight[ids])  # (2, d)
        query = attention.q_proj(hidden[:1]).view(1, 1, -1, head_dim).transpose(1, 2)  # (1, Hq, 1, hd)
        key = attention.k_proj(hidden[1:]).view(1, 1, -1, head_dim).transpose(1, 2)  # (1, Hkv, 1, hd)
        distances = torch.arange(max_distance + 1)
        queries = query.expand(-1, -1, len(distances), -1)
        cos, sin = decoder.rotary_emb(queries, (key_position + distances)[None])
        rotated_queries, _ = apply_rotary(queries, queries, cos, sin)
        cos, sin = decoder.rotary_emb(key, torch.tensor([[key_position]]))
        _, rotated_key = apply_rotary(key, key, cos, sin)
        group = query.shape[1] // key.shape[1]
        keys = rotated_key.repeat_interleave(group, dim=1)  # each query head reads its key head
        scores = (rotated_queries[0] @ keys[0].transpose(-1, -2))[..., 0] * attention.scaling
    tok = lm.tokenizer
    return RotaryCurve(tok.decode([ids[0]]), tok.decode([ids[1]]), layer, distances.tolist(),
                       scores.float().numpy(), group)


def _bert(encoder):
    module = encoder[0]
    return getattr(module, "model", None) or module.auto_model


def learned_position_similarity(encoder, n_positions: int = 128) -> np.ndarray:
    """Cosine similarity of MiniLM's learned position vectors 0..n_positions-1, (n, n)."""
    table = getattr(_bert(encoder).embeddings, "position_embeddings", None)
    if table is None:
        raise ValueError("This encoder has no learned position embeddings.")
    n = max(2, min(int(n_positions), table.weight.shape[0], MAX_POSITIONS))
    with torch.inference_mode():
        vectors = torch.nn.functional.normalize(table.weight[:n].double(), dim=1)
        similarity = (vectors @ vectors.T).numpy()
    return np.clip((similarity + similarity.T) / 2, -1.0, 1.0)

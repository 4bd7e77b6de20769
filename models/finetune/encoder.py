"""The model that part 1 trains: MiniLM's sentence embedding and a new linear head, and what each
regime lets change.

What it teaches: transfer learning keeps the pretrained encoder and adds a small head for the new
task. The regime decides how much of the encoder may move: nothing (frozen: only the head learns,
so each example's embedding can be computed once), the top N of its 6 layers, or LoRA adapters —
small low-rank matrices beside the attention projections, whose weights never change themselves.

The sentence embedding is the mean of the token vectors, L2-normalised: all-MiniLM-L6-v2's own
pooling, so the zero-shot cosine baseline and the head read the same vectors. A pair goes through
the encoder one sentence at a time (a siamese network, as sentence-transformers trains it), and
the head reads [u, v, |u − v|, u·v]: SBERT's classifier features plus the elementwise product,
whose sum is the cosine.

The encoder always runs in eval mode (no dropout), so training never draws from torch's global
random generator, which other tabs share: the seed alone decides the head's and LoRA's initial
weights and the order of the examples.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.modeling_outputs import SequenceClassifierOutput

FROZEN, TOP_LAYERS, LORA = "frozen", "top layers", "lora"
REGIMES = (FROZEN, TOP_LAYERS, LORA)
LORA_TARGETS = ("query", "key", "value")  # BERT's attention projections


@dataclass(frozen=True)
class Regime:
    kind: str = FROZEN
    layers: int = 2  # for TOP_LAYERS: how many of the top encoder layers train
    rank: int = 8  # for LORA: the rank r of each adapter (its scale alpha is 2r)

    def describe(self) -> str:
        if self.kind == TOP_LAYERS:
            return f"top {self.layers} layer{'s' * (self.layers != 1)} + head"
        if self.kind == LORA:
            return f"LoRA r={self.rank} on {'/'.join(LORA_TARGETS)} + head"
        return "frozen encoder + linear head"


def mean_pool(encoder: nn.Module, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
    """Unit-length sentence embeddings (batch, hidden): the masked mean of the last layer."""
    out = encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
    mask = attention_mask.unsqueeze(-1).to(out.dtype)
    return F.normalize((out * mask).sum(1) / mask.sum(1).clamp(min=1.0), dim=-1)


class SentenceClassifier(nn.Module):
    """Encoder + mean pooling + linear head; returns what transformers' Trainer expects."""

    def __init__(self, encoder: nn.Module, n_labels: int, pair: bool):
        super().__init__()
        self.encoder = encoder
        self.pair = pair
        hidden = encoder.config.hidden_size
        self.scale = hidden ** 0.5  # unit-length vectors -> features of unit RMS, a friendly scale for the head
        self.head = nn.Linear(hidden * (4 if pair else 1), n_labels)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # no dropout: gradients still flow, nothing random happens
        return self

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return mean_pool(self.encoder, input_ids, attention_mask, token_type_ids)

    def classify(self, u: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        u = u * self.scale
        if not self.pair:
            return self.head(u)
        v = v * self.scale
        return self.head(torch.cat([u, v, (u - v).abs(), u * v], dim=-1))

    def forward(self, labels=None, features=None, features_b=None, input_ids=None, attention_mask=None,
                token_type_ids=None, input_ids_b=None, attention_mask_b=None, token_type_ids_b=None):
        """Token inputs (one sentence, or both of a pair with the `_b` suffix), or precomputed
        embeddings (`features`, `features_b`) when the encoder is frozen."""
        u = features if features is not None else self.embed(input_ids, attention_mask, token_type_ids)
        v = None
        if self.pair:
            v = features_b if features_b is not None else self.embed(input_ids_b, attention_mask_b, token_type_ids_b)
        logits = self.classify(u, v)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def copy_encoder(base: nn.Module) -> nn.Module:
    """A private copy of the shared encoder (loaded with eager attention for the attention tab),
    switched to PyTorch's fused attention for speed. The shared model is never touched."""
    encoder = copy.deepcopy(base)
    encoder.set_attn_implementation("sdpa")
    encoder.requires_grad_(False)
    return encoder


def build(base: nn.Module, n_labels: int, pair: bool, regime: Regime) -> SentenceClassifier:
    """The classifier for a regime, on a copy of `base`. Its initial weights come from torch's
    default random generator: call it inside models.finetune.control.seeded()."""
    encoder = copy_encoder(base)
    if regime.kind == TOP_LAYERS:
        for layer in encoder.encoder.layer[-regime.layers:]:
            layer.requires_grad_(True)
    elif regime.kind == LORA:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=regime.rank, lora_alpha=2 * regime.rank, lora_dropout=0.0,
                            target_modules=list(LORA_TARGETS))
        encoder = get_peft_model(encoder, config)
    elif regime.kind != FROZEN:
        raise ValueError(f"Unknown regime {regime.kind!r}; expected one of {REGIMES}.")
    return SentenceClassifier(encoder, n_labels, pair).train()


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def trained_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters that training may change: all a session needs to keep."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """Put trained weights back into a freshly built model of the same regime."""
    missing = set(weights) - {name for name, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"The weights do not fit this model: {sorted(missing)[:3]}")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, value in weights.items():
            params[name].copy_(value)
    return model

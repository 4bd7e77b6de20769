"""Switch heads off and measure what changes: "does this head matter?" answered with numbers.

A head's output is a slice of the input of the attention's output projection (Llama
`o_proj`, BERT `attention.output.dense`): the heads sit side by side there, each `head_dim`
wide. A forward pre-hook zeroes the chosen slices, which removes exactly those heads'
contributions and nothing else. The hooks act only for the calling thread and are removed
afterwards, so the shared model is unchanged for everyone else.

- Decoder: the next-token distribution after the last token, KL(before ‖ after) in nats and
  the top-5 tokens before / after.
- Encoder: the sentence embedding (mean pooling + L2 norm, as all-MiniLM-L6-v2 does), its
  cosine similarity to the original, and the tokens whose output vectors moved most.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from models.attention.capture import AttentionData, attention_modules, head_dim, output_projections, thread_hook

TOP_K = 5


@dataclass
class KnockoutResult:
    kind: str
    heads: list[tuple[int, int]]
    kl: float | None = None  # decoder: KL(before ‖ after), nats
    top_before: list[tuple[str, float]] = field(default_factory=list)
    top_after: list[tuple[str, float]] = field(default_factory=list)
    cosine: float | None = None  # encoder: cosine(original embedding, knocked-out embedding)
    moved_tokens: list[tuple[str, float]] = field(default_factory=list)  # (token, cosine) least similar


def parse_heads(spec: str, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """'2.3, 4.*' -> [(2, 3), (4, 0), (4, 1), ...]: layer.head pairs; `*` or `all` for a whole layer."""
    heads: list[tuple[int, int]] = []
    for part in filter(None, (p.strip() for p in re.split(r"[,;\s]+", spec or ""))):
        match = re.fullmatch(r"[Ll]?(\d+)\s*[.:/Hh]\s*(\d+|\*|all)", part, re.IGNORECASE)
        if not match:
            raise ValueError(f"{part!r} is not a head: write layer.head, e.g. 2.3, or 2.all for a whole layer.")
        layer = int(match.group(1))
        if layer >= n_layers:
            raise ValueError(f"Layer {layer} does not exist (layers 0-{n_layers - 1}).")
        chosen = range(n_heads) if not match.group(2).isdigit() else [int(match.group(2))]
        for head in chosen:
            if head >= n_heads:
                raise ValueError(f"Head {head} does not exist (heads 0-{n_heads - 1}).")
            if (layer, head) not in heads:
                heads.append((layer, head))
    if not heads:
        raise ValueError("Name at least one head to switch off, e.g. 0.1 or 3.*.")
    return sorted(heads)


@contextlib.contextmanager
def heads_off(model, heads: list[tuple[int, int]]):
    """Within the block, the given (layer, head) pairs contribute nothing (this thread only)."""
    projections = output_projections(model)
    width = head_dim(attention_modules(model)[0])
    by_layer: dict[int, list[int]] = defaultdict(list)
    for layer, head in heads:
        by_layer[layer].append(head)

    def zeroer(chosen):
        def hook(module, args):
            x = args[0].clone()
            for head in chosen:
                x[..., head * width:(head + 1) * width] = 0
            return (x, *args[1:])
        return hook

    with contextlib.ExitStack() as stack:
        for layer, chosen in by_layer.items():
            stack.enter_context(thread_hook(projections[layer], zeroer(chosen)))
        yield


def _top(probs: torch.Tensor, tokenizer) -> list[tuple[str, float]]:
    values, ids = probs.topk(TOP_K)
    return [(tokenizer.decode([i]), round(float(v), 4)) for v, i in zip(values, ids.tolist(), strict=False)]


def _sentence_embedding(hidden: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(hidden[0].mean(0), dim=0)


def knockout(adapter, data: AttentionData, heads: list[tuple[int, int]]) -> KnockoutResult:
    """Run the model with and without `heads` and compare (decoder: next token; encoder: embedding)."""
    model, inputs = adapter.model, data.model_inputs()
    for layer, head in heads:
        if not (0 <= layer < data.n_layers and 0 <= head < data.n_heads):
            raise ValueError(f"Head {layer}.{head} does not exist in this model.")
    with torch.no_grad():
        before = model(**inputs)
        with heads_off(model, heads):
            after = model(**inputs)
    if data.kind == "decoder":
        p = torch.softmax(before.logits[0, -1].float(), -1)
        q = torch.softmax(after.logits[0, -1].float(), -1)
        kl = float(torch.sum(p * (torch.log(p.clamp_min(1e-30)) - torch.log(q.clamp_min(1e-30)))))
        return KnockoutResult("decoder", heads, kl=max(kl, 0.0), top_before=_top(p, adapter.tokenizer),
                              top_after=_top(q, adapter.tokenizer))
    h0, h1 = before.last_hidden_state, after.last_hidden_state
    cosine = float(torch.dot(_sentence_embedding(h0), _sentence_embedding(h1)))
    per_token = torch.nn.functional.cosine_similarity(h0[0], h1[0], dim=-1)
    order = per_token.argsort()[:TOP_K].tolist()
    moved = [(data.labels[i], round(float(per_token[i]), 4)) for i in order]
    return KnockoutResult("encoder", heads, cosine=cosine, moved_tokens=moved)

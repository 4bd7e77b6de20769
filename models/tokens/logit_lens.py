"""What each layer predicts: the logit lens on SmolLM2.

What it teaches: a decoder keeps one vector per position (the residual stream) and every layer
adds its contribution to it. Only the last one is meant to be read, through the final norm and
the output head, as a distribution over the next token; reading the earlier ones the same way
shows the prediction forming: early layers mostly echo the input token, middle layers try
candidates, and the final choice often appears a few layers before the end.

One forward pass with `output_hidden_states=True`; each layer's states go through the model's
own final norm and output head. The last row is the model's own output (its logits), so the
lens agrees with the model exactly where the model speaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.chat import encode_chat, user_message

MAX_PROMPT_TOKENS = 64  # tokens of the student's text; a chat template adds its own around them
MAX_PROMPT_CHARS = 4_000  # what the tokenizer sees at most, before the cut in tokens
MAX_TOP_K = 10
ROWS_PER_PROJECTION = 128  # (rows x vocabulary) logits at a time: 128 x 49,152 floats = 25 MB (measured fastest)


@dataclass
class LogitLens:
    """`top_ids[layer, position]` are the k most likely next tokens read after that layer."""

    tokens: list[str]  # the input tokens, decoded
    input_ids: list[int]
    layers: list[str]  # "embeddings", "layer 1", ..., "layer L"
    top_ids: np.ndarray  # (layers, positions, k)
    top_probs: np.ndarray  # (layers, positions, k)
    chosen_ids: np.ndarray  # (positions,): the model's own top-1 next token at each position
    chosen_probs: np.ndarray  # (layers, positions): that token's probability after each layer
    chosen_ranks: np.ndarray  # (layers, positions): its rank after each layer, 1 = top
    vocabulary: dict[int, str]  # decoded text of every id above
    notes: list[str] = field(default_factory=list)

    def text(self, token_id) -> str:
        return self.vocabulary[int(token_id)]

    def top_tokens(self, layer: int, position: int) -> list[tuple[str, int, float]]:
        return [(self.text(i), int(i), float(p)) for i, p in
                zip(self.top_ids[layer, position], self.top_probs[layer, position], strict=True)]

    def as_dict(self) -> dict:
        return {
            "tokens": self.tokens, "input_ids": self.input_ids, "layers": self.layers,
            "top": [[[{"token": t, "id": i, "p": round(p, 6)} for t, i, p in self.top_tokens(layer, pos)]
                     for pos in range(len(self.tokens))] for layer in range(len(self.layers))],
            "chosen": {"tokens": [self.text(i) for i in self.chosen_ids], "ids": self.chosen_ids.tolist(),
                       "probability": np.round(self.chosen_probs, 6).tolist(),
                       "rank": self.chosen_ranks.tolist()},
            "notes": list(self.notes)}


def prompt_ids(tokenizer, prompt: str, as_chat: bool) -> tuple[list[int], list[str]]:
    """The ids the lens reads: the prompt cut to MAX_PROMPT_TOKENS tokens, raw or as a chat message."""
    prompt = prompt or ""
    if not prompt.strip():
        raise ValueError("Type a prompt first: the lens reads the model's prediction after each of its tokens.")
    encoding = tokenizer(prompt[:MAX_PROMPT_CHARS], add_special_tokens=False, return_offsets_mapping=True)
    notes = []
    if len(encoding["input_ids"]) > MAX_PROMPT_TOKENS:
        prompt = prompt[: encoding["offset_mapping"][MAX_PROMPT_TOKENS - 1][1]]
        notes.append(f"The prompt is longer than {MAX_PROMPT_TOKENS} tokens; the lens reads the first "
                     f"{MAX_PROMPT_TOKENS} (a grid of every layer x every position).")
        encoding = tokenizer(prompt, add_special_tokens=False)
    if as_chat and getattr(tokenizer, "chat_template", None):
        return encode_chat(tokenizer, user_message(prompt)), notes
    return list(encoding["input_ids"]), notes


def _read(logits: torch.Tensor, chosen: torch.Tensor, k: int):
    """Top-k ids and probabilities, and the chosen token's probability and rank, for rows of logits.

    Three passes over the (rows x vocabulary) logits, which together cost about as much as computing
    them, so each is the fastest exact form measured on one core: top-k; softmax (one fused
    kernel, twice as fast as logsumexp); and the rank as a count of the logits above the chosen
    one, done in place as sign(max(logit - chosen, 0)) summed (a bool sum widens to int64 and is
    several times slower). The rank is counted on logits, not probabilities, which underflow to 0
    for the far tail."""
    top = logits.topk(k, dim=-1)
    probs = logits.softmax(dim=-1)
    chosen_logit = logits.gather(-1, chosen[:, None])
    rank = logits.sub_(chosen_logit).clamp_(min=0).sign_().sum(dim=-1).int() + 1
    return top.indices, probs.gather(-1, top.indices), probs.gather(-1, chosen[:, None])[:, 0], rank


def logit_lens(lm, prompt: str, as_chat: bool = False, top_k: int = 5) -> LogitLens:
    """Read the residual stream after the embeddings and after every layer through the final norm and head."""
    k = max(1, min(int(top_k), MAX_TOP_K))
    ids, notes = prompt_ids(lm.tokenizer, prompt, as_chat)
    model = lm.model
    decoder = getattr(model, "model", model)
    norm, head = decoder.norm, model.get_output_embeddings()
    with torch.inference_mode():
        input_ids = torch.tensor([ids])
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), output_hidden_states=True)
        final = out.logits[0].float().clone()  # _read works in place
        chosen = final.argmax(dim=-1)
        n, n_layers = len(ids), len(out.hidden_states)
        # hidden_states[-1] already went through the final norm; the model's own logits stand for it.
        stream = torch.cat([h[0] for h in out.hidden_states[:-1]])  # ((layers - 1) * n, d)
        reads = []
        for start in range(0, stream.shape[0], ROWS_PER_PROJECTION):
            rows = stream[start:start + ROWS_PER_PROJECTION]
            reads.append(_read(head(norm(rows)).float(), chosen.repeat(n_layers - 1)[start:start + len(rows)], k))
        reads.append(_read(final, chosen, k))
        top_ids, top_probs, chosen_probs, ranks = (torch.cat(parts).reshape(n_layers, n, -1).squeeze(-1)
                                                   for parts in zip(*reads, strict=True))
    top_ids, chosen_np = top_ids.reshape(n_layers, n, k).numpy(), chosen.numpy()
    unique = np.unique(np.concatenate([top_ids.ravel(), chosen_np, np.asarray(ids)])).tolist()
    vocabulary = dict(zip(unique, lm.tokenizer.batch_decode([[i] for i in unique]), strict=True))
    layers = ["embeddings"] + [f"layer {i}" for i in range(1, n_layers)]
    return LogitLens([vocabulary[i] for i in ids], ids, layers, top_ids,
                     top_probs.reshape(n_layers, n, k).numpy(), chosen_np, chosen_probs.numpy(), ranks.numpy(),
                     vocabulary, notes)

"""Extractive question answering: pick the answer span inside the passage.

A model fine-tuned on SQuAD-style data scores every token as a possible start and end of
the answer; the answer is the span with the best start x end probability (end after start,
within a length limit, inside the passage). Long passages are read in overlapping windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Span:
    text: str
    start: int  # character offsets in the passage
    end: int
    score: float  # P(start) * P(end), in [0, 1]


def extract_answer(model, tokenizer, question: str, context: str, *, max_answer_tokens: int = 30,
                   max_length: int = 384, stride: int = 128) -> Span:
    """The most probable answer span of `context` for `question`."""
    enc = tokenizer(question, context, truncation="only_second", max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding=True,
                    return_tensors="pt")
    offsets = enc.pop("offset_mapping")
    enc.pop("overflow_to_sample_mapping", None)
    with torch.no_grad():
        out = model(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
    best = Span("", 0, 0, -1.0)
    for window in range(enc["input_ids"].shape[0]):
        in_context = torch.tensor([sid == 1 for sid in enc.sequence_ids(window)])
        start_p = torch.softmax(out.start_logits[window].masked_fill(~in_context, -1e9), -1)
        end_p = torch.softmax(out.end_logits[window].masked_fill(~in_context, -1e9), -1)
        # scores[i, j] = P(start=i) * P(end=j), kept only for i <= j < i + max_answer_tokens.
        scores = torch.triu(start_p[:, None] * end_p[None, :])
        scores = torch.tril(scores, diagonal=max_answer_tokens - 1)
        flat = int(scores.argmax())
        i, j = divmod(flat, scores.shape[1])
        score = float(scores[i, j])
        if score > best.score:
            start, end = int(offsets[window, i, 0]), int(offsets[window, j, 1])
            best = Span(context[start:end], start, end, score)
    return best

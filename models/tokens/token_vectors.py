"""Token embeddings: the first thing SmolLM2 does with an id is look up a row of a 49,152 x 576 matrix.

What it teaches: each token id selects one learned vector (SmolLM2 ties this matrix to its
output head, so the same vectors also score the next token). Tokens used alike end up with
vectors pointing alike: the nearest neighbours of a token by cosine are often its variants
and relatives. The classic word2vec arithmetic (king - man + woman ~ queen) is tested here
honestly: the result is ranked against the whole vocabulary, with and without the three input
tokens (which the usual recipe leaves out, since the sum is usually closest to one of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_NEIGHBOURS = 50
MAX_WORD_CHARS = 64


@dataclass(frozen=True)
class Neighbour:
    text: str  # the token decoded (" king": with its leading space)
    token_id: int
    cosine: float


@dataclass(frozen=True)
class Neighbours:
    query: Neighbour  # the token looked up (cosine 1)
    neighbours: list[Neighbour]


@dataclass(frozen=True)
class Analogy:
    words: tuple[str, str, str]  # a - b + c
    tokens: tuple[Neighbour, Neighbour, Neighbour]  # the three inputs, each with its cosine to a - b + c
    top: list[Neighbour]  # nearest to a - b + c, the three input tokens left out
    nearest_overall: Neighbour  # nearest with the inputs included (often a itself)
    expected: Neighbour | None  # the answer the student expects, with its cosine
    expected_rank: int | None  # 1 = best, among all tokens but the three inputs
    expected_rank_with_inputs: int | None

    def as_dict(self) -> dict:
        def row(n: Neighbour | None):
            return None if n is None else {"token": n.text, "id": n.token_id, "cosine": round(n.cosine, 5)}

        return {"words": list(self.words), "tokens": [row(t) for t in self.tokens], "top": [row(t) for t in self.top],
                "nearest_overall": row(self.nearest_overall), "expected": row(self.expected),
                "expected_rank": self.expected_rank, "expected_rank_with_inputs": self.expected_rank_with_inputs}


def word_token(tokenizer, word: str) -> int:
    """The id of `word` as one token: as in running text (" word") if the vocabulary has it, else bare."""
    word = (word or "").strip()
    if not word:
        raise ValueError("Type a word.")
    if len(word) > MAX_WORD_CHARS:
        raise ValueError(f"Type one word (up to {MAX_WORD_CHARS} characters); this has {len(word)}.")
    for form in (" " + word, word):
        ids = tokenizer(form, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return int(ids[0])
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(" " + word, add_special_tokens=False)["input_ids"][:12])
    raise ValueError(f"{word!r} is not one token for SmolLM2: it is cut into {len(pieces)} pieces "
                     f"({' '.join(pieces)}). Pick a word that is a single token.")


def _matrix(lm) -> torch.Tensor:
    return lm.model.get_input_embeddings().weight.detach()


def _cosines(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    return (matrix @ vector) / (matrix.norm(dim=1) * vector.norm()).clamp_min(1e-12)


def _neighbour(tokenizer, token_id: int, cosine: float) -> Neighbour:
    return Neighbour(tokenizer.decode([token_id]), int(token_id), float(cosine))


def nearest_tokens(lm, word: str, k: int = 10) -> Neighbours:
    """The k tokens whose input embeddings point most like `word`'s (cosine), the token itself left out."""
    k = max(1, min(int(k), MAX_NEIGHBOURS))
    token_id = word_token(lm.tokenizer, word)
    with torch.inference_mode():
        matrix = _matrix(lm)
        scores = _cosines(matrix, matrix[token_id])
        scores[token_id] = -2.0
        best = scores.topk(k)
    neighbours = [_neighbour(lm.tokenizer, i, s) for s, i in zip(best.values.tolist(), best.indices.tolist(),
                                                                 strict=True)]
    return Neighbours(_neighbour(lm.tokenizer, token_id, 1.0), neighbours)


def analogy(lm, a: str, b: str, c: str, expected: str = "", k: int = 10) -> Analogy:
    """a - b + c on unit-length token vectors, ranked by cosine against the whole vocabulary."""
    k = max(1, min(int(k), MAX_NEIGHBOURS))
    tok = lm.tokenizer
    ids = [word_token(tok, w) for w in (a, b, c)]
    expected_id = word_token(tok, expected) if (expected or "").strip() else None
    with torch.inference_mode():
        matrix = _matrix(lm)
        unit = [matrix[i] / matrix[i].norm() for i in ids]
        full = _cosines(matrix, unit[0] - unit[1] + unit[2])
        scores = full.clone()
        scores[ids] = -2.0  # the usual recipe: the answer may not be one of the three inputs
        best = scores.topk(k)

    def rank(among: torch.Tensor) -> int | None:
        if expected_id is None or among[expected_id] < -1.5:
            return None
        return int((among > among[expected_id]).sum()) + 1

    def neighbour(i: int) -> Neighbour:
        return _neighbour(tok, i, float(full[i]))

    return Analogy((a, b, c), tuple(neighbour(i) for i in ids), [neighbour(i) for i in best.indices.tolist()],
                   neighbour(int(full.argmax())), None if expected_id is None else neighbour(expected_id),
                   rank(scores), rank(full))

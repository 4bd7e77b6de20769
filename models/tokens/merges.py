"""Why a word is one token or several: BPE's merge path and WordPiece's vocabulary lookups.

What it teaches: byte-level BPE starts from single bytes and repeatedly joins the adjacent
pair that was most frequent in its training data (the lowest rank in the tokenizer's merge
list) until no listed merge applies; a common word ends as one token, a rare one stops
halfway. WordPiece goes the other way: from the start of a word it looks up the longest piece
that is in its vocabulary, then continues from there with `##` pieces; a word it cannot spell
becomes `[UNK]`. Both are replayed here from the tokenizer's own files (tokenizer.json), and
the result is checked against the tokenizer itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from models.tokens.tokenization import backend_json

MAX_WORD_CHARS = 48  # a word to explain, not a paragraph (its pieces of text are all explained)


@dataclass(frozen=True)
class MergeStep:
    left: str
    right: str
    rank: int  # position in the merge list: lower = learned earlier = more frequent
    pieces: tuple[str, ...]  # the word after this merge


@dataclass(frozen=True)
class MergePath:
    """BPE on one pre-token (a word with its leading space), from bytes to final tokens."""

    word: str  # as the tokenizer spells it, e.g. "Ġtokenization"
    start: tuple[str, ...]  # one symbol per byte
    steps: tuple[MergeStep, ...]
    whole_word_in_vocab: bool  # True when the tokenizer takes a word in its vocabulary as is (ignore_merges)

    @property
    def pieces(self) -> tuple[str, ...]:
        return self.steps[-1].pieces if self.steps else self.start


@dataclass(frozen=True)
class Lookup:
    start: int  # character where this lookup begins
    candidate: str  # the string looked up (with ## after the word's first piece)
    found: bool


@dataclass(frozen=True)
class LookupPath:
    """WordPiece on one word: every vocabulary lookup of the greedy longest-match, in order."""

    word: str  # after normalization (lower-cased, accents stripped) and splitting
    lookups: tuple[Lookup, ...]
    pieces: tuple[str, ...]  # ("[UNK]",) when some part of the word is in no piece of the vocabulary
    too_long: bool = False

    @property
    def misses(self) -> int:
        return sum(not lookup.found for lookup in self.lookups)


def _checked_word(word: str) -> str:
    word = (word or "").strip()
    if not word:
        raise ValueError("Type a word to explain.")
    if len(word) > MAX_WORD_CHARS:
        raise ValueError(f"Pick one word (up to {MAX_WORD_CHARS} characters) to explain; it has {len(word)}.")
    return word


@functools.lru_cache(maxsize=4)
def _merge_ranks(tokenizer) -> dict[tuple[str, str], int]:
    merges = backend_json(tokenizer)["model"]["merges"]
    pairs = (tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges)
    return {pair: rank for rank, pair in enumerate(pairs)}


def _bpe(word: str, ranks: dict, vocab: dict, ignore_merges: bool) -> MergePath:
    symbols = tuple(word)
    if ignore_merges and word in vocab:
        return MergePath(word, symbols, (), True)
    steps = []
    while len(symbols) > 1:
        candidates = [(ranks[pair], i) for i, pair in enumerate(zip(symbols, symbols[1:], strict=False))
                      if pair in ranks]
        if not candidates:
            break
        rank, i = min(candidates)  # the earliest-learned merge; the leftmost when it occurs twice
        left, right = symbols[i], symbols[i + 1]
        symbols = symbols[:i] + (left + right,) + symbols[i + 2:]
        steps.append(MergeStep(left, right, rank, symbols))
    return MergePath(word, tuple(word), tuple(steps), False)


def bpe_merge_path(tokenizer, word: str) -> list[MergePath]:
    """The merge path of each pre-token of `word`, as it would appear in the middle of a sentence
    (with its leading space)."""
    word = _checked_word(word)
    spec = backend_json(tokenizer)
    if spec["model"]["type"] != "BPE":
        raise ValueError("This tokenizer is not BPE: it has no merge list.")
    backend = tokenizer.backend_tokenizer
    text = " " + word
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    words = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)] if backend.pre_tokenizer else [text]
    ranks = _merge_ranks(tokenizer)
    vocab = spec["model"]["vocab"]
    ignore = bool(spec["model"].get("ignore_merges"))
    return [_bpe(w, ranks, vocab, ignore) for w in words]


def wordpiece_lookups(tokenizer, word: str) -> list[LookupPath]:
    """Every vocabulary lookup WordPiece makes for each word of `word` (after its normalizer)."""
    word = _checked_word(word)
    spec = backend_json(tokenizer)
    model = spec["model"]
    if model["type"] != "WordPiece":
        raise ValueError("This tokenizer is not WordPiece: it does not look pieces up greedily.")
    backend = tokenizer.backend_tokenizer
    text = backend.normalizer.normalize_str(word) if backend.normalizer is not None else word
    words = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)] if backend.pre_tokenizer else [text]
    vocab, prefix = model["vocab"], model.get("continuing_subword_prefix", "##")
    limit, unk = int(model.get("max_input_chars_per_word", 100)), model.get("unk_token", "[UNK]")
    return [_greedy_longest_match(w, vocab, prefix, limit, unk) for w in words]


def _greedy_longest_match(word: str, vocab: dict, prefix: str, limit: int, unk: str) -> LookupPath:
    if len(word) > limit:
        return LookupPath(word, (), (unk,), too_long=True)
    lookups, pieces, start = [], [], 0
    while start < len(word):
        end, piece = len(word), None
        while start < end:  # the longest candidate first, one character shorter each miss
            candidate = (prefix if start > 0 else "") + word[start:end]
            found = candidate in vocab
            lookups.append(Lookup(start, candidate, found))
            if found:
                piece = candidate
                break
            end -= 1
        if piece is None:  # no piece of the vocabulary starts here: the whole word is unknown
            return LookupPath(word, tuple(lookups), (unk,))
        pieces.append(piece)
        start = end
    return LookupPath(word, tuple(lookups), tuple(pieces))

"""Cut one text with two tokenizers and compare: SmolLM2's byte-level BPE and MiniLM's WordPiece.

What it teaches: a model never sees characters, only ids from a fixed vocabulary. Byte-level
BPE spells every byte as a printable character (`Ġ` is a space, `Ċ` a newline), so it can
encode any text, emoji included, sometimes as pieces of one character; WordPiece lower-cases,
splits words on spaces and punctuation, marks a piece that continues a word with `##`, and
falls back to `[UNK]` for what its vocabulary cannot spell. The same paragraph costs a
different number of tokens in each, and a chat template adds tokens of its own.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

from models.chat import chat_text, user_message

MAX_CHARS = 10_000  # the tokenizers are fast; this bounds the HTML the page has to draw
TEXT, SPECIAL, TEMPLATE, UNKNOWN = "text", "special", "template", "unknown"
_SENTINEL = "\u2063\u2063"  # invisible separators: where the user's text goes in the chat template


@dataclass(frozen=True)
class Piece:
    """One token: the vocabulary string as stored, its id, and the characters of the input it covers."""

    token: str  # with the tokenizer's own markers: Ġ (space) and Ċ (newline) in BPE, ## in WordPiece
    token_id: int
    text: str  # the input characters this piece covers ("" for an added special token)
    kind: str  # TEXT | SPECIAL | TEMPLATE | UNKNOWN
    byte_hex: str = ""  # the bytes of a byte-level piece that is not whole UTF-8 characters (part of an emoji)


@dataclass
class Tokenization:
    """One tokenizer's cut of one text, and what it cost."""

    name: str  # the model's name
    algorithm: str  # "byte-level BPE" | "WordPiece" | the backend's model type
    vocab_size: int
    pieces: list[Piece]
    n_chars: int  # characters of the user's text
    normalized: str  # the text after the tokenizer's normalizer (WordPiece lower-cases and strips accents)
    notes: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(p.kind == kind for p in self.pieces)

    @property
    def text_tokens(self) -> int:
        """Tokens that spell the user's text ([UNK] included): the cost of the text itself."""
        return self.count(TEXT) + self.count(UNKNOWN)

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / self.text_tokens if self.text_tokens else 0.0

    def as_dict(self) -> dict:
        return {"tokenizer": self.name, "algorithm": self.algorithm, "vocab_size": self.vocab_size,
                "pieces": [p.token for p in self.pieces], "ids": [p.token_id for p in self.pieces],
                "kinds": [p.kind for p in self.pieces], "text_tokens": self.text_tokens,
                "total_tokens": len(self.pieces), "special_tokens": self.count(SPECIAL),
                "template_tokens": self.count(TEMPLATE), "unknown_tokens": self.count(UNKNOWN),
                "characters": self.n_chars, "chars_per_token": round(self.chars_per_token, 3),
                "normalized": self.normalized, "notes": list(self.notes)}


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: each printable stand-in character -> the byte it spells."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def piece_bytes(token: str) -> bytes | None:
    """The bytes a byte-level BPE piece stands for (None when the piece is not byte-level)."""
    table = _byte_of_char()
    if not all(ch in table for ch in token):
        return None
    return bytes(table[ch] for ch in token)


@functools.lru_cache(maxsize=8)
def backend_json(tokenizer) -> dict:
    """The fast tokenizer's whole definition (tokenizer.json): model type, vocab, merges, normalizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{type(tokenizer).__name__} has no fast (tokenizers) backend to look inside.")
    return json.loads(backend.to_str())


def algorithm(tokenizer) -> str:
    spec = backend_json(tokenizer)
    kind = spec["model"]["type"]
    if kind == "BPE" and "ByteLevel" in json.dumps(spec.get("pre_tokenizer")):
        return "byte-level BPE"
    return kind


def _special_ids(tokenizer) -> set[int]:
    return {int(i) for i in tokenizer.all_special_ids}


def _chat_span(tokenizer, text: str) -> tuple[str, int, int]:
    """The chat prompt for `text` and where the user's text sits inside it."""
    prefix, _, suffix = chat_text(tokenizer, user_message(_SENTINEL)).partition(_SENTINEL)
    full = chat_text(tokenizer, user_message(text))
    if full == prefix + text + suffix:
        return full, len(prefix), len(prefix) + len(text)
    start = full.rfind(text) if text else len(prefix)  # a template that rewrites the message
    return full, max(start, 0), max(start, 0) + len(text)


def _kind(token_id: int, start: int, end: int, span: tuple[int, int], specials: set[int], unk_id) -> str:
    if token_id in specials and token_id != unk_id:
        return SPECIAL
    if token_id == unk_id:
        return UNKNOWN
    inside = start < span[1] and end > span[0] or (start == end and span[0] <= start < span[1])
    return TEXT if inside else TEMPLATE


def tokenize(tokenizer, name: str, text: str, as_chat: bool = False) -> Tokenization:
    """Cut `text` the way the model sees it: plain (with the tokenizer's own special tokens), or,
    with `as_chat`, as a user message inside the chat template (when the tokenizer has one)."""
    text = text or ""
    if len(text) > MAX_CHARS:
        raise ValueError(f"The text has {len(text):,} characters; this view takes up to {MAX_CHARS:,}.")
    notes = []
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if as_chat and has_template:
        model_text, start, end = _chat_span(tokenizer, text)
        encoding = tokenizer(model_text, add_special_tokens=False, return_offsets_mapping=True)
        notes.append("As a chat message: the chat template wraps the text in a system prompt and role markers; "
                     "those tokens are the model's, not yours, but every request pays for them.")
    else:
        model_text, start, end = text, 0, len(text)
        encoding = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        if as_chat:
            notes.append(f"{name} has no chat template: an encoder reads plain text between its own special tokens.")
    ids = list(encoding["input_ids"])
    tokens = tokenizer.convert_ids_to_tokens(ids)
    specials, unk_id = _special_ids(tokenizer), tokenizer.unk_token_id
    kind_of_algorithm = algorithm(tokenizer)
    pieces = []
    for token_id, token, (a, b) in zip(ids, tokens, encoding["offset_mapping"], strict=True):
        kind = _kind(token_id, a, b, (start, end), specials, unk_id)
        covered = "" if kind == SPECIAL and a == b else model_text[a:b]
        byte_hex = ""
        if kind_of_algorithm == "byte-level BPE" and kind != SPECIAL:
            raw = piece_bytes(token)
            if raw is not None:
                try:
                    covered = raw.decode("utf-8")
                except UnicodeDecodeError:  # part of a multi-byte character
                    byte_hex = raw.hex(" ")
        pieces.append(Piece(token, int(token_id), covered, kind, byte_hex))
    normalizer = tokenizer.backend_tokenizer.normalizer
    normalized = normalizer.normalize_str(text) if normalizer is not None else text
    return Tokenization(name, kind_of_algorithm, len(tokenizer), pieces, len(text), normalized, notes)

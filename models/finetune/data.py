"""Labelled examples: the two bundled tasks and a user's CSV file, checked at the door.

What it teaches: a task is a list of (text[, text_b], label) examples with a fixed
train/validation split; the model only ever learns from the training part, and the
validation part tells how well it generalises. A CSV upload is bounded in bytes, rows,
labels, characters and tokens before any model sees it, and every problem is named.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "finetune"
PAIRS, TOPICS = "Paraphrase pairs", "Everyday topics"

# Limits of an uploaded CSV (the bundled tasks respect them too).
MAX_UPLOAD_BYTES = 200_000
MIN_ROWS, MAX_ROWS = 20, 1_000
MAX_LABELS = 8
MIN_PER_LABEL = 4  # so that each label has examples on both sides of the split
MAX_TEXT_BYTES = 500
MAX_TEXT_TOKENS = 64  # per sentence; the encoder's input is cut there anyway
VALIDATION_SHARE = 0.2


class DataError(ValueError):
    """The data cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    text_b: str | None = None


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    labels: tuple[str, ...]
    train: tuple[Example, ...]
    validation: tuple[Example, ...]

    @property
    def is_pair(self) -> bool:
        return self.train[0].text_b is not None

    @property
    def fingerprint(self) -> str:
        """Identifies the exact examples (a cache key that never confuses two uploads)."""
        digest = hashlib.sha256()
        for split in (self.train, self.validation):
            for ex in split:
                digest.update(f"{ex.text}\x1f{ex.text_b}\x1f{ex.label}\x1e".encode())
            digest.update(b"\x1d")
        return digest.hexdigest()[:16]

    def summary(self) -> str:
        counts = Counter(ex.label for ex in self.train + self.validation)
        per_label = ", ".join(f"{name} {counts[i]}" for i, name in enumerate(self.labels))
        kind = "sentence pairs" if self.is_pair else "sentences"
        return (f"{len(self.train)} training and {len(self.validation)} validation {kind}; "
                f"labels: {per_label}.")


DESCRIPTIONS = {
    PAIRS: "Do the two sentences say the same thing? Paraphrases, and near-misses that change one fact (a time, "
           "a number, who did what) or the judgement (good ↔ bad) — like MRPC, written for this project.",
    TOPICS: "Which topic is the sentence about: food, travel, health or money? One sentence per example.",
}
FILES = {PAIRS: "paraphrase_pairs.csv", TOPICS: "everyday_topics.csv"}


def load_bundled(name: str) -> Task:
    """One of the bundled tasks, with its fixed split (the CSV's `split` column)."""
    if name not in FILES:
        raise DataError(f"Unknown task {name!r}; the bundled tasks are {', '.join(FILES)}.")
    rows = list(csv.DictReader((ASSETS / FILES[name]).read_text(encoding="utf-8").splitlines()))
    labels = tuple(sorted({row["label"] for row in rows}))
    splits: dict[str, list[Example]] = {"train": [], "validation": []}
    for row in rows:
        splits[row["split"]].append(Example(row["text"], labels.index(row["label"]), row.get("text_b")))
    return Task(name, DESCRIPTIONS[name], labels, tuple(splits["train"]), tuple(splits["validation"]))


def _rows(data: bytes) -> tuple[list[str], list[list[str]]]:
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"The file has {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}. "
                        f"Keep up to {MAX_ROWS:,} short rows.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"The file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8.") from None
    if "\x00" in text:
        raise DataError("The file contains NUL bytes: it is not a CSV text file.")
    try:
        table = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise DataError(f"The CSV cannot be parsed: {exc}.") from None
    if not table:
        raise DataError("The file is empty.")
    return [cell.strip().lower() for cell in table[0]], table[1:]


def parse_csv(data: bytes, count_tokens: Callable[[str], int], name: str = "My CSV") -> Task:
    """A Task from CSV bytes with a header `text,label` or `text,text_b,label` (optional `split`
    column with train/validation; otherwise a fixed 80/20 split by a hash of each row)."""
    header, body = _rows(data)
    columns = set(header)
    if not {"text", "label"} <= columns or not columns <= {"text", "text_b", "label", "split"}:
        raise DataError(f"The header must be text,label or text,text_b,label (optionally split); "
                        f"found: {','.join(header)[:200]}.")
    if not MIN_ROWS <= len(body) <= MAX_ROWS:
        raise DataError(f"The file has {len(body):,} data rows; between {MIN_ROWS} and {MAX_ROWS:,} are needed.")
    at = {column: header.index(column) for column in columns}
    records = []
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"Row {number} has {len(row)} columns; the header has {len(header)}.")
        texts = [row[at[c]].strip() for c in ("text", "text_b") if c in at]
        label = row[at["label"]].strip()
        for value in texts:
            _check_text(value, number, count_tokens)
        if not label or len(label.encode()) > 40:
            raise DataError(f"Row {number}: the label must be 1 to 40 bytes long.")
        split = row[at["split"]].strip().lower() if "split" in at else _hash_split(texts, label)
        if split not in ("train", "validation"):
            raise DataError(f"Row {number}: split must be train or validation, not {split[:20]!r}.")
        records.append((texts, label, split))
    return _task(name, records)


def _check_text(value: str, number: int, count_tokens: Callable[[str], int]) -> None:
    if not value:
        raise DataError(f"Row {number} has an empty text.")
    if len(value.encode()) > MAX_TEXT_BYTES:
        raise DataError(f"Row {number}: a text has {len(value.encode())} bytes; the limit is {MAX_TEXT_BYTES}.")
    tokens = count_tokens(value)
    if tokens > MAX_TEXT_TOKENS:
        raise DataError(f"Row {number}: a text has {tokens} tokens; the limit is {MAX_TEXT_TOKENS}.")


def _hash_split(texts: list[str], label: str) -> str:
    """A fixed split that does not depend on row order: the same row always lands on the same side."""
    digest = hashlib.sha256("\x1f".join([*texts, label]).encode()).digest()
    return "validation" if digest[0] < 256 * VALIDATION_SHARE else "train"


def _task(name: str, records: list) -> Task:
    counts = Counter(label for _, label, _ in records)
    if not 2 <= len(counts) <= MAX_LABELS:
        raise DataError(f"Found {len(counts)} distinct labels; between 2 and {MAX_LABELS} are needed.")
    rare = [f"{label!r} ({n})" for label, n in counts.items() if n < MIN_PER_LABEL]
    if rare:
        raise DataError(f"Each label needs at least {MIN_PER_LABEL} examples; too few: {', '.join(rare[:5])}.")
    labels = tuple(sorted(counts))
    splits: dict[str, list[Example]] = {"train": [], "validation": []}
    for texts, label, split in records:
        splits[split].append(Example(texts[0], labels.index(label), texts[1] if len(texts) > 1 else None))
    for split, examples in splits.items():
        if len(examples) < 2 or len({ex.label for ex in examples}) < 2:
            raise DataError(f"The {split} part needs examples of at least two labels; add rows or a split column.")
    description = f"Uploaded CSV: {len(records)} rows."
    return Task(name, description, labels, tuple(splits["train"]), tuple(splits["validation"]))

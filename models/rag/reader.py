"""Give the small reader less to read: the best sentences, a tight prompt, decoding that cannot loop.

A 135M model reading four whole 128-token chunks often echoes a heading, starts a list, or
loops. Here the question is compared (MiniLM cosine) with every sentence of the retrieved
chunks; the best few, each with its neighbours, become the context, numbered by the chunk they
come from. The prompt asks for one short sentence copied from the facts, with one worked example.
Decoding stops at the first complete answer (a sentence end or a line break) and at the first
repeated sentence, so it cannot loop.

The sentence closest to a question is often a heading or an FAQ's own question ("Can I renew my
loans?"); when a sentence is quoted, such a line stands for the sentence after it, the answer.

Each switch (`Reading`) is a row of the ablation in bench/rag_quality.py; the defaults are the
settings that measured best on the calibration split.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from langchain_core.prompts import ChatPromptTemplate

from models.chat import ChatPrompt, stream_answer
from models.rag.chain import ANSWER_PROMPT, trim_repeats
from models.similarity import embed, split_sentences

PROMPTS = ("tight", "quote", "original")

_EXAMPLE = ("Facts:\n[1] The museum opens at 9:30 and closes at 17:00. Entry is free for children under 12.\n\n"
            "Question: When does the museum close?")
# One worked example: a 135M model follows an example far better than an instruction. An example
# of declining ("I don't know") made it decline every question (measured): refusing is left to
# the refusal rule (models/rag/refusal.py).
TIGHT_PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer the question in one short sentence, using only the facts. Copy names, numbers, "
               "dates and units exactly as they are written."),
    ("human", _EXAMPLE),
    ("ai", "The museum closes at 17:00."),
    ("human", "Facts:\n{context}\n\nQuestion: {question}"),
])

QUOTE_PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Reply with the one sentence of the facts that answers the question, copied word for word."),
    ("human", _EXAMPLE),
    ("ai", "The museum opens at 9:30 and closes at 17:00."),
    ("human", "Facts:\n{context}\n\nQuestion: {question}"),
])

# What a small model writes when it declines: "I don't know", "The passage does not mention ...".
_REFUSAL = re.compile(
    r"\b(i (do not|don't|dont) know|(does|do|did)(n't| not) (contain|mention|say|state|specify|provide|include|"
    r"give|tell|list)|(is|are)(n't| not) (mentioned|specified|stated|provided|given|listed|included)|"
    r"no (information|mention|details?)|not enough information|cannot (answer|be determined|determine)|"
    r"can't (answer|tell)|unknown|the documents don't contain)\b", re.IGNORECASE)
# A negative answer: "does not have", "no café", "never", "can't".
_DENIAL = re.compile(r"\b(not|no|never|cannot|none|nothing)\b|n't\b", re.IGNORECASE)
_LEAD_IN = re.compile(
    r"^\s*(answer\s*:|a\s*:|according to (the )?(facts|context|passages?|text|documents?)( below| above)?\s*,|"
    r"(the )?(facts|context|passages?|text|documents?) (states?|says?|mentions?)( that)?\s*:?|"
    r"based on (the )?(facts|context|passages?|text)\s*,)\s*", re.IGNORECASE)
_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\[\d+\])\s+")
_MARKUP = re.compile(r"(?m)^#+\s*|\*\*|__")
_HEADING = re.compile(r"(?m)^#+ [^\n]*$")
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|St|No|approx|e\.g|i\.e|etc|vs)\.$", re.IGNORECASE)


@dataclass(frozen=True)
class Reading:
    """How the reader is fed and decoded."""

    sentence_window: bool = True  # the best sentences with their neighbours, instead of whole chunks
    sentences: int = 3  # how many best-matching sentences
    window: int = 1  # neighbours kept on each side of a chosen sentence
    prompt: str = "tight"  # "tight" | "quote" | "original" (the chain's prompt before issue 18)
    first_answer: bool = True  # stop at the first complete answer (and at a repeated sentence)
    max_new_tokens: int = 64

    def __post_init__(self):
        if self.prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {PROMPTS}, not {self.prompt!r}")


@dataclass
class Sentence:
    text: str
    chunk: int  # 0-based index of its chunk in the hits given to build_context
    position: int  # its order within the chunk
    score: float  # cosine similarity to the question


@dataclass
class Context:
    """What the reader was given, and every scored sentence of the chunks (for checks and signals)."""

    sentences: list[Sentence]
    vectors: np.ndarray  # unit vectors of `sentences`, row by row
    passages: list[tuple[int, str]]  # (1-based chunk number, text) in prompt order
    chosen: list[int] = field(default_factory=list)  # indices into `sentences` that were picked

    @property
    def text(self) -> str:
        return "\n\n".join(f"[{n}] {text}" for n, text in self.passages)

    @property
    def best(self) -> Sentence | None:
        return max(self.sentences, key=lambda s: s.score, default=None)

    def answer_at(self, sentence: Sentence) -> Sentence | None:
        """`sentence`, or when it is a heading or a question line, the first sentence after it in
        its chunk that is neither (None when the chunk ends first): what a reader would quote."""
        i = next((i for i, s in enumerate(self.sentences) if s is sentence), None)
        if i is None:
            return sentence
        while is_label(self.sentences[i].text):
            if i + 1 == len(self.sentences) or self.sentences[i + 1].chunk != sentence.chunk:
                return None
            i += 1
        return self.sentences[i]

    @property
    def best_answer(self) -> Sentence | None:
        """The sentence to quote for the question: the closest one, a heading or an FAQ's question
        standing for the sentence after it (one that ends its chunk stands for nothing)."""
        for sentence in sorted(self.sentences, key=lambda s: -s.score):
            if (answer := self.answer_at(sentence)) is not None:
                return answer
        return self.best


def is_label(text: str) -> bool:
    """A heading or a question line ("Membership fees", "Can I renew my loans?"). It is often the
    sentence closest to a question, but in an FAQ or minutes the answer is the sentence after it."""
    text = text.strip()
    return text.endswith("?") or (not re.search(r"[.!;:)\"”']$", text) and len(text.split()) <= 12)


def clean(text: str) -> str:
    """Chunk text without markdown heading marks and bold markers."""
    return _MARKUP.sub("", text or "")


def chunk_sentences(text: str) -> list[str]:
    """The sentences of a chunk: markdown headings, list numbers and other crumbs are dropped,
    bold and heading marks removed."""
    body = _HEADING.sub("", text or "")
    return [s for s in split_sentences(clean(body)) if len(re.findall(r"\w", s)) >= 3]


def build_context(encoder, question: str, texts: Sequence[str], reading: Reading = Reading()) -> Context:
    """Score every sentence of `texts` (the retrieved chunks, best first) against the question and
    choose what the model reads: whole chunks, or the best sentences with their neighbours."""
    groups = [chunk_sentences(t) or [clean(t).strip()] for t in texts]
    flat = [(c, p, s) for c, group in enumerate(groups) for p, s in enumerate(group) if s]
    vectors = embed(encoder, [question] + [s for _, _, s in flat]) if flat else np.zeros((1, 1), np.float32)
    scores = vectors[1:] @ vectors[0] if flat else np.zeros(0)
    sentences = [Sentence(s, c, p, float(score)) for (c, p, s), score in zip(flat, scores, strict=True)]
    context = Context(sentences, vectors[1:], [])
    if not reading.sentence_window:
        context.passages = [(n, clean(t).strip()) for n, t in enumerate(texts, 1)]
        return context
    picked: set[tuple[int, int]] = set()
    seen_text: set[str] = set()
    for i in np.argsort(-scores, kind="stable"):
        s = sentences[i]
        key = re.sub(r"\W+", " ", s.text.lower()).strip()
        if key in seen_text:  # the same sentence again, from the overlap of two chunks
            continue
        seen_text.add(key)
        context.chosen.append(int(i))
        for p in range(s.position - reading.window, s.position + reading.window + 1):
            if 0 <= p < len(groups[s.chunk]):
                picked.add((s.chunk, p))
        if len(context.chosen) >= reading.sentences:
            break
    for c, group in enumerate(groups):
        positions = sorted(p for cc, p in picked if cc == c)
        if positions:
            context.passages.append((c + 1, _join_runs(group, positions)))
    return context


def _join_runs(group: list[str], positions: list[int]) -> str:
    """Consecutive sentences joined by a space, gaps marked with an ellipsis."""
    out, previous = [], None
    for p in positions:
        if previous is not None and p != previous + 1:
            out.append("…")
        out.append(group[p])
        previous = p
    return " ".join(out)


def prompt_for(reading: Reading) -> ChatPromptTemplate:
    """The reader's prompt template (each takes {context} and {question})."""
    return {"tight": TIGHT_PROMPT, "quote": QUOTE_PROMPT, "original": ANSWER_PROMPT}[reading.prompt]


def denies(text: str) -> bool:
    """True when the answer is a denial ("The library does not have a café"). Unsupported by the
    documents, a denial is how a small model says they never mention the thing asked about."""
    return bool(_DENIAL.search(text or ""))


def model_refused(text: str) -> bool:
    """True when the model's answer says it does not know / the context lacks the answer."""
    return bool(_REFUSAL.search(text or "")) or not (text or "").strip()


def tidy(text: str) -> str:
    """The answer without markup, list markers and lead-ins such as 'The passage states:'."""
    text = clean(text).strip()
    for _ in range(2):
        text = _LIST_MARK.sub("", _LEAD_IN.sub("", text)).strip()
    text = text.strip(" \"'“”")
    return text[:1].upper() + text[1:] if text else text


def first_answer(text: str) -> tuple[str, bool]:
    """(the first complete answer in a streamed text, whether it is complete): it ends at a line
    break after some words, or at a sentence end followed by more text."""
    stripped = text.lstrip()
    offset = len(text) - len(stripped)
    for match in re.finditer(r"\n|[.!?](?=[\s\"'”)\]])", stripped):
        head = stripped[:match.start() + (0 if match.group() == "\n" else 1)]
        words = len(re.findall(r"\w+", _LIST_MARK.sub("", head)))
        if match.group() == "\n":
            if words >= 1:
                return text[:offset + len(head)].rstrip(), True
            continue
        if words >= 2 and not _ABBREVIATION.search(head):
            return text[:offset + len(head)], True
    return text, False


def read(lm, prompt: ChatPrompt, reading: Reading = Reading(), *, temperature: float = 0.0,
         seed: int = 0) -> Iterator[str]:
    """Stream the answer (cumulative text), stopped at the first complete answer when asked, and
    always at a repeated sentence."""
    stop = threading.Event()
    for text in stream_answer(lm, prompt, max_new_tokens=reading.max_new_tokens, temperature=temperature,
                              seed=seed, stop=stop):
        text, done = first_answer(text) if reading.first_answer else trim_repeats(text)
        yield text
        if done:
            stop.set()
            break

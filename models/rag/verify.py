"""Answers checked against their sources, sentence by sentence.

Each answer sentence (a claim) is compared with every sentence of the retrieved chunks. It is
supported when

1. a retrieved sentence says much the same (MiniLM cosine >= `min_similarity`), or the claim's
   content words all occur around that sentence (a short answer such as "24 beds" has a low cosine to
   the long sentence it was copied from); and
2. its names, numbers, dates, codes and units all appear in the sentence it cites or the sentences
   beside it in that chunk (so they are in the cited chunk, and in the same place). A number must
   come with the same unit ("13 hours" is not supported by "13 minutes").

A figure, code or name of the answer found nowhere in what the model read is `invented`: a small
model asked about something the documents never say tends to make one up ("The Wi-Fi password
is 123456"), which makes it a refusal signal (models/rag/refusal.py).

A supported claim may still not answer the question: a small model sometimes copies a sentence
of the context that is about something else. A claim is on topic when its evidence sentence is
about as close to the question as the closest one (within `topic_margin` cosine).

An unsupported claim keeps its best source sentence, which is quoted in its place. Data only:
tabs/rag_views.py draws the marks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from models.rag.keyword import content_words
from models.rag.reader import Context, Sentence, chunk_sentences
from models.similarity import embed, split_sentences

MIN_SIMILARITY = 0.7  # calibrated: see bench/rag_quality.py
TOPIC_MARGIN = 0.15  # calibrated: see bench/rag_quality.py
REACH = 0  # neighbours on each side of the evidence sentence that may hold the claim's facts (calibrated)
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
UNITS = {"second", "minute", "hour", "day", "week", "month", "year", "mm", "cm", "m", "km", "metre", "meter",
         "mile", "g", "kg", "gram", "kilogram", "tonne", "ml", "l", "litre", "liter", "w", "kw", "watt", "v",
         "volt", "db", "p", "pence", "pound", "euro", "dollar", "percent", "%", "£", "$", "€", "c", "f",
         "degree", "time", "night", "item", "page", "bag", "bed", "seat", "people", "person", "member"}
_WORD = re.compile(r"[A-Za-z][\w'-]*|\d(?:[\w,:.-]*\w)?|[£$€%]")


@dataclass
class Claim:
    """One answer sentence and what the check found."""

    text: str
    supported: bool
    evidence: Sentence | None  # the retrieved sentence that best supports it
    similarity: float  # its cosine to that sentence
    cites: list[int] = field(default_factory=list)  # 1-based chunk numbers it cites
    missing: list[str] = field(default_factory=list)  # names/numbers/units found in none of the chunks
    reason: str = ""
    fits: bool = False  # its names, numbers and units are all around its evidence sentence
    lexical: bool = False  # its content words are all around its evidence sentence
    on_topic: bool = True  # its evidence is about as close to the question as the closest sentence


@dataclass
class Verification:
    claims: list[Claim]

    @property
    def supported(self) -> bool:
        """True when every claim is supported (and there is at least one)."""
        return bool(self.claims) and all(c.supported for c in self.claims)

    @property
    def unsupported(self) -> list[Claim]:
        return [c for c in self.claims if not c.supported]

    @property
    def on_topic(self) -> bool:
        """True when every claim rests on a sentence close to the question."""
        return bool(self.claims) and all(c.on_topic for c in self.claims)


def _number_key(token: str) -> str:
    """'£4,310' -> '4310', '8.30' -> '8:30', 'three' -> '3', '0161' -> '161' (a dropped leading
    zero is a copying slip, not another number)."""
    token = token.lower().strip("£$€% ").rstrip(".,:;-")
    token = NUMBER_WORDS.get(token, token)
    token = re.sub(r"(?<=\d),(?=\d{3}\b)", "", token)
    return re.sub(r"^0+(?=\d)", "", token).replace(".", ":")


def _unit(word: str) -> str:
    word = word.lower().rstrip(".,;")
    return word[:-1] if len(word) > 2 and word.endswith("s") else word


def _name_key(word: str) -> str:
    """A name as compared: lower case, without quotes or a plural s ("Sundays" matches "Sunday")."""
    return _unit(word.strip("'"))


def facts(text: str) -> dict[str, set]:
    """The checkable facts of a text: numbers (normalised), number+unit pairs, names and codes."""
    words = _WORD.findall(text or "")
    numbers, pairs, names = set(), set(), set()
    for i, word in enumerate(words):
        lower = word.lower()
        if word in "£$€%":
            continue
        if word[0].isdigit() or lower in NUMBER_WORDS:
            key = _number_key(word)
            numbers.add(key)
            if i and words[i - 1] in "£$€":
                pairs.add((key, words[i - 1]))
            nxt = _unit(words[i + 1]) if i + 1 < len(words) else ""
            if nxt in UNITS and ":" not in key:  # a clock time ("18:30 hours") has no unit to mismatch
                pairs.add((key, nxt))
        elif word[0].isupper() or re.search(r"\d", word):
            names.add(lower.strip("'"))
    return {"numbers": numbers, "pairs": pairs, "names": names}


def claim_facts(sentence: str) -> dict[str, set]:
    """`facts` of an answer sentence. Its first word is capitalised anyway, so it counts as a name
    only when it holds a digit (a code such as 'E01'); a name that starts the sentence is usually
    followed by a surname, which is checked."""
    found = facts(sentence)
    first = (_WORD.findall(sentence) or [""])[0]
    if first and not re.search(r"\d", first):
        found["names"].discard(first.lower().strip("'"))
    return found


def missing_facts(claim: str, source: str) -> list[str]:
    """The claim's names, numbers and number+unit pairs that `source` lacks."""
    want, have = claim_facts(claim), facts(source)
    source_words = {_name_key(w) for w in _WORD.findall(source)}
    missing = [n for n in sorted(want["numbers"]) if n not in have["numbers"]]
    missing += [f"{u}{n}" if u in "£$€" else f"{n} {u}" for n, u in sorted(want["pairs"])
                if n in have["numbers"] and (n, u) not in have["pairs"]]
    missing += [name for name in sorted(want["names"]) if _name_key(name) not in source_words]
    return missing


def invented_facts(answer: str, read: str) -> list[str]:
    """The figures written in digits, codes and names of `answer` that occur nowhere in `read` (what
    the model was given). Number words are left out ("the one that ..." is no figure), and a name
    matches its plural ("Sunday" / "Sundays")."""
    have = facts(read)["numbers"]
    read_words = {_name_key(w) for w in _WORD.findall(read)}
    found = []
    for sentence in split_sentences(answer or ""):
        found += [n for w in _WORD.findall(sentence) if w[0].isdigit() and (n := _number_key(w)) not in have]
        found += [name for name in sorted(claim_facts(sentence)["names"])
                  if not name[0].isdigit() and _name_key(name) not in read_words]
    return list(dict.fromkeys(found))


def _neighbourhood(context: Context, i: int, reach: int = 1) -> str:
    """Sentence i of the context with its neighbours (up to `reach` on each side) in the same chunk."""
    s = context.sentences[i]
    return " ".join(t.text for t in context.sentences
                    if t.chunk == s.chunk and abs(t.position - s.position) <= reach)


def verify(encoder, answer: str, context: Context, *, min_similarity: float = MIN_SIMILARITY,
           topic_margin: float = TOPIC_MARGIN, reach: int = REACH) -> Verification:
    """Check every sentence of `answer` against the scored sentences of the retrieved chunks.

    A claim's evidence is the most similar retrieved sentence whose neighbourhood (itself and the
    sentences beside it in its chunk) holds every name, number and unit of the claim; the claim is
    supported when that sentence is close enough (cosine, or all its content words). Without such
    a sentence it is unsupported, and its evidence is simply the most similar sentence."""
    claims_text = split_sentences(answer or "")
    if not claims_text:
        return Verification([])
    if not context.sentences:
        return Verification([Claim(c, False, None, 0.0, reason="nothing was retrieved") for c in claims_text])
    sims = embed(encoder, claims_text) @ np.asarray(context.vectors).T
    claims = []
    for text, row in zip(claims_text, sims, strict=True):
        order = [int(i) for i in np.argsort(-row, kind="stable")]
        words = set(content_words(text))
        fitting = next((i for i in order if not missing_facts(text, _neighbourhood(context, i, reach))), None)
        best = order[0] if fitting is None else fitting
        evidence, similarity = context.sentences[best], float(row[best])
        lexical = bool(words) and words <= set(content_words(_neighbourhood(context, best)))
        if fitting is None:
            everywhere = " ".join(t.text for t in context.sentences)
            missing = missing_facts(text, everywhere) or missing_facts(text, _neighbourhood(context, best, reach))
            reason = f"not in the sources: {', '.join(missing)}"
        elif similarity < min_similarity and not lexical:
            missing, reason = [], f"no retrieved sentence says this, best cosine {similarity:.2f}"
        else:
            missing, reason = [], ""
        on_topic = evidence.score >= context.best.score - topic_margin
        claims.append(Claim(text, not reason, evidence, similarity, [evidence.chunk + 1], missing, reason,
                            fitting is not None, lexical, on_topic))
    return Verification(claims)


__all__ = ["Claim", "Verification", "verify", "facts", "missing_facts", "invented_facts", "chunk_sentences"]

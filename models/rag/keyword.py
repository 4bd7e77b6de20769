"""Keyword search beside the vectors: BM25 (bm25s) per session, fused with the dense ranking.

Dense retrieval (MiniLM cosine) finds paraphrases but ranks rare exact tokens low: a product
code, a phone number or a surname carries little meaning for the encoder. BM25 scores exactly
those tokens highly (rare words weigh more), so the two rankings are combined with reciprocal
rank fusion (RRF): a chunk's fused score is the sum of 1 / (k + rank) over the rankings that
hold it, which needs no calibration between cosine and BM25 scales.

An index is built from a session's chunks as they are stored (so it is the same on every replica
that reads the same Chroma collection) and kept in a `KeywordIndexCache`, an LRU bounded in
entries and chunks, owned by the document store: the key carries a fingerprint of the stored
chunks, so any upload, delete or reset gives a new key and the stale index is never used.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN_PLUS

RRF_K = 60  # the constant of Cormack et al. (2009): ranks past ~60 add little
# BM25 hits under this share of the best one's score match only common words; left in the keyword
# ranking, their ranks would outvote a rare exact match (a code the vectors rank 9th) in the fusion.
MIN_SHARE = 0.5
TOKEN_PATTERN = r"(?u)\b\w+\b"  # keep one-character tokens: "4", "B" in "gate B"
# bm25s' longer English list (NLTK's) and the words questions are made of ("how many", "could")
STOPWORDS = tuple(STOPWORDS_EN_PLUS) + ("many", "much", "would", "could", "may", "might", "must", "also",
                                        "shall", "please")
# A question put as a command ("Name the capital of France.", "Tell me when ...") starts with a verb
# the answer never contains; coverage skips it there (and only there: "name" is content elsewhere).
INSTRUCTION_VERBS = frozenset({"name", "list", "tell", "give", "describe", "explain", "state", "say", "show",
                               "find", "identify", "mention"})


def stem(words: list[str]) -> list[str]:
    """Harman's S-stemmer (plurals only), for bm25s: 'ospreys' -> 'osprey', 'minutes' -> 'minute'."""
    out = []
    for w in words:
        if len(w) > 3 and w.endswith("ies") and not w.endswith(("eies", "aies")):
            w = w[:-3] + "y"
        elif len(w) > 3 and w.endswith("es") and not w.endswith(("aes", "ees", "oes")):
            w = w[:-1]
        elif len(w) > 3 and w.endswith("s") and not w.endswith(("us", "ss")):
            w = w[:-1]
        out.append(w)
    return out


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased word tokens without stop words, plural-stemmed (bm25s.tokenize)."""
    if not texts:
        return []
    return bm25s.tokenize(list(texts), token_pattern=TOKEN_PATTERN, stopwords=STOPWORDS, stemmer=stem,
                          return_ids=False, show_progress=False, allow_empty=False)


def content_words(text: str) -> list[str]:
    """The tokens BM25 would match for `text` (duplicates removed, order kept)."""
    return list(dict.fromkeys(tokenize([text])[0])) if text and text.strip() else []


@dataclass(frozen=True)
class KeywordHit:
    position: int  # index into the ids the index was built from
    id: str
    score: float  # BM25 score (> 0: at least one query token matched)
    label: str = ""  # where the chunk lives (its collection's name)


class KeywordIndex:
    """BM25 over a fixed list of chunks; also knows each token's document frequency (for IDF)."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str], labels: Sequence[str] | None = None):
        if len(ids) != len(texts) or (labels is not None and len(labels) != len(ids)):
            raise ValueError("ids, texts and labels must have the same length.")
        self.ids = list(ids)
        self.labels = list(labels) if labels is not None else [""] * len(self.ids)
        corpus = tokenize(texts)
        self.doc_freq = Counter(t for doc in corpus for t in set(doc))
        self._bm25 = bm25s.BM25()
        if self.ids:
            self._bm25.index(corpus, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def idf(self, token: str) -> float:
        """Inverse document frequency; a token in no chunk gets the highest value."""
        n = max(len(self.ids), 1)
        return math.log(1 + (n - self.doc_freq.get(token, 0) + 0.5) / (self.doc_freq.get(token, 0) + 0.5))

    def search(self, query: str, k: int = 20, min_share: float = MIN_SHARE) -> list[KeywordHit]:
        """The best `k` chunks scoring at least `min_share` of the best BM25 score (and above zero)."""
        tokens = [t for t in content_words(query) if t in self._bm25.vocab_dict] if self.ids else []
        if not tokens:
            return []
        scores = self._bm25.get_scores(tokens)
        top = np.argsort(-scores, kind="stable")[:k]
        floor = max(float(scores[top[0]]) * min_share, 1e-9)
        return [KeywordHit(int(i), self.ids[i], float(scores[i]), self.labels[i]) for i in top if scores[i] >= floor]

    def coverage(self, question: str, text: str) -> float:
        """IDF-weighted share of the question's content words that occur in `text` (1 = all)."""
        words = content_words(question)
        if len(words) > 1 and words[0] in INSTRUCTION_VERBS:
            words = words[1:]
        if not words:
            return 0.0
        present = set(tokenize([text])[0]) if text else set()
        total = sum(self.idf(w) for w in words)
        return sum(self.idf(w) for w in words if w in present) / total if total else 0.0


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuse rankings of ids (best first) into one: score(id) = sum of 1 / (k + rank), rank from 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


@dataclass(frozen=True)
class Fused:
    id: str
    share: float  # the fused score as a share of the best possible (1.0 = first in both rankings)
    dense_rank: int | None  # 1-based; None: not among the dense candidates
    keyword_rank: int | None  # 1-based; None: no query word in it


def fuse(dense_ids: Sequence[str], keyword_ids: Sequence[str], k: int = RRF_K) -> list[Fused]:
    """The dense and keyword rankings fused (RRF), best first, with each chunk's rank in both."""
    dense = {cid: r for r, cid in enumerate(dense_ids, 1)}
    keyword = {cid: r for r, cid in enumerate(keyword_ids, 1)}
    return [Fused(cid, fused_share(score, 2, k), dense.get(cid), keyword.get(cid))
            for cid, score in reciprocal_rank_fusion([dense_ids, keyword_ids], k)]


def fused_share(score: float, n_rankings: int = 2, k: int = RRF_K) -> float:
    """An RRF score as a share of the best possible (first in every ranking): 1.0 = top everywhere."""
    return score / (n_rankings / (k + 1))


class KeywordIndexCache:
    """Bounded LRU of keyword indexes, keyed by (collection names, fingerprint of their chunks).

    Thread-safe; an index is built outside the lock (two searches may build the same one once).
    `invalidate(name)` drops every entry involving a collection (after a write in this process);
    entries for other fingerprints of the same session are replaced on insert.
    """

    def __init__(self, max_entries: int = 64, max_chunks: int = 200_000):
        self.max_entries = max_entries
        self.max_chunks = max_chunks
        self._entries: OrderedDict[tuple, KeywordIndex] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0  # how many indexes were built (tests and the bench read it)

    def get(self, owner: str, fingerprint: str, build: Callable[[], KeywordIndex]) -> KeywordIndex:
        key = (owner, fingerprint)
        with self._lock:
            index = self._entries.get(key)
            if index is not None:
                self._entries.move_to_end(key)
                return index
        index = build()
        with self._lock:
            self.builds += 1
            for stale in [k for k in self._entries if k[0] == owner]:  # older versions of this owner
                del self._entries[stale]
            self._entries[key] = index
            self._shrink()
        return index

    def invalidate(self, name: str) -> None:
        """Forget every index that includes collection `name`."""
        with self._lock:
            for key in [k for k in self._entries if name in k[0].split("+")]:
                del self._entries[key]

    def _shrink(self) -> None:
        held = sum(len(i) for i in self._entries.values())
        while self._entries and (len(self._entries) > self.max_entries or held > self.max_chunks):
            _, dropped = self._entries.popitem(last=False)
            held -= len(dropped)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def chunk_fingerprint(ids: Sequence[str], starts: Sequence[int]) -> str:
    """A short digest of the stored chunks (ids and offsets): it changes with any upload or delete,
    and with a re-upload under another chunking."""
    import hashlib

    digest = hashlib.blake2b(digest_size=12)
    for cid, start in sorted(zip(ids, starts, strict=True)):
        digest.update(f"{cid}:{start};".encode())
    return digest.hexdigest()



"""The QnA bot's passage mode with the document chat's reader.

A pasted passage is one "retrieved chunk": the reader picks its sentences closest to the question
(with their neighbours), the tight prompt asks for one short sentence, decoding stops at the first
complete answer, the answer is checked against the passage's sentences, and the refusal rule
decides between the answer, a quoted sentence and "the passage doesn't contain the answer"
(models/rag/grounded.py). Keyword coverage weighs the question's words by how rare they are
among the passage's sentences.
"""

from __future__ import annotations

from collections.abc import Iterator

from models.rag.grounded import Answering, GroundedTurn, answer
from models.rag.hits import Hit
from models.rag.keyword import KeywordIndex
from models.rag.reader import chunk_sentences

NO_ANSWER_IN_PASSAGE = "The passage doesn't contain the answer to this question."


def passage_turns(lm, encoder, question: str, passage: str, *, answering: Answering = Answering(),
                  context_tokens: int = 2048, temperature: float = 0.0, seed: int = 0) -> Iterator[GroundedTurn]:
    """Yield the turn after each step and streamed token; the last one is done and checked."""
    sentences = chunk_sentences(passage) or [passage]
    index = KeywordIndex([str(i) for i in range(len(sentences))], sentences)
    hit = Hit("passage", passage, "passage", None, 1.0, False)
    yield from answer(lm, lambda _: [hit], question, None, encoder=encoder, coverage=index.coverage,
                      answering=answering, threshold=-1.0, context_tokens=context_tokens, temperature=temperature,
                      seed=seed)


def shown_text(turn: GroundedTurn) -> str:
    """The answer as the QnA bot shows it: the passage's own refusal wording, no [1] markers."""
    if turn.done and turn.refused:
        return NO_ANSWER_IN_PASSAGE
    return turn.answer.replace(" [1]", "")

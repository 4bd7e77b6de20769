"""The QnA bot's logic: a question (and optional passage) becomes a chat prompt that fits.

It also finds the passage sentence that best supports a generated answer (embedding
similarity), and lays out an extractive answer span, both as (text, label) segments that a
highlight view can show directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.chat import ChatPrompt, build_prompt, count_tokens, message_text, truncate_tokens
from models.qna.extractive import Span
from models.registry import CausalLM
from models.similarity import best_match, sentence_spans

MAX_QUESTION_TOKENS = 256
# Tokens the chat template and instructions add around the question and passage.
TEMPLATE_OVERHEAD = 96
CONTEXT_INSTRUCTION = (
    "Answer the question using only the context below. If the context does not contain "
    "the answer, say that you don't know.\n\nContext:\n{context}"
)
SUPPORT_LABEL = "supports the answer"

Segments = list[tuple[str, str | None]]


@dataclass
class PreparedQuestion:
    prompt: ChatPrompt
    question: str  # as sent (possibly truncated)
    context: str  # as sent (possibly truncated)
    notices: list[str] = field(default_factory=list)



def plain_history(history: list[dict] | None) -> list[dict]:
    """User/assistant turns as {"role", "content": str}, dropping notes and empty replies."""
    turns = []
    for message in history or []:
        role = message.get("role")
        text = message_text(message.get("content")).strip()
        if role in ("user", "assistant") and text and not (message.get("metadata") or {}).get("title"):
            turns.append({"role": role, "content": text})
    return turns


def prepare_question(lm: CausalLM, question: str, context: str, history: list[dict] | None, *,
                     max_new_tokens: int, context_tokens: int) -> PreparedQuestion:
    """Truncate what is too long (with a notice), then build the prompt within the budget."""
    notices = []
    question, n_question = truncate_tokens(lm, question.strip(), MAX_QUESTION_TOKENS)
    if n_question > MAX_QUESTION_TOKENS:
        notices.append(f"The question was cut to {MAX_QUESTION_TOKENS} tokens (it had {n_question}).")
    context = (context or "").strip()
    if context:
        room = context_tokens - max_new_tokens - count_tokens(lm, question) - TEMPLATE_OVERHEAD
        context, n_context = truncate_tokens(lm, context, max(room, 0))
        if n_context > room:
            notices.append(f"The passage was cut to its first {room} tokens (it had {n_context}) "
                           "to fit the model's context budget.")
    messages = [{"role": "system", "content": CONTEXT_INSTRUCTION.format(context=context)}] if context else []
    messages += plain_history(history) + [{"role": "user", "content": question}]
    prompt = build_prompt(lm, messages, max_new_tokens=max_new_tokens, context_tokens=context_tokens)
    if prompt.dropped_turns:
        notices.append(f"The {prompt.dropped_turns} oldest exchange(s) were left out so the conversation "
                       f"fits the {context_tokens}-token context budget.")
    return PreparedQuestion(prompt, question, context, notices)


def _segments(text: str, start: int, end: int, label: str) -> Segments:
    pieces = [(text[:start], None), (text[start:end], label), (text[end:], None)]
    return [(piece, tag) for piece, tag in pieces if piece]


def supporting_sentence(encoder, answer: str, context: str) -> tuple[Segments, float]:
    """The passage as segments with its sentence most similar to the answer labelled."""
    spans = sentence_spans(context)
    if not spans or not answer.strip():
        return [(context, None)], 0.0
    index, score = best_match(encoder, answer, [context[s:e] for s, e in spans])
    start, end = spans[index]
    return _segments(context, start, end, SUPPORT_LABEL), score


def rested_on(turn, context: str) -> tuple[Segments, float]:
    """The passage as segments with the sentence a passage-mode answer rests on labelled: the quoted
    sentence, else the evidence of its first claim, else the sentence closest to the question."""
    claims = turn.verification.claims if turn.verification else []
    sentence = turn.quote or next((c.evidence for c in claims if c.evidence is not None), None) or \
        (turn.context.best if turn.context else None)
    if sentence is None:
        return [(context, None)], 0.0
    start = context.find(sentence.text)
    if start < 0:
        return [(context, None)], sentence.score
    return _segments(context, start, start + len(sentence.text), SUPPORT_LABEL), sentence.score


def span_segments(context: str, span: Span) -> Segments:
    """The passage with the extracted answer span labelled with its score."""
    return _segments(context, span.start, span.end, f"answer ({span.score:.0%})")

"""The question-answering chain over retrieved chunks, one visible step at a time.

1. History-aware rewrite: a follow-up ("and how many heads?") becomes a standalone question
   with a langchain-core prompt | model runnable (skipped on the first turn).
2. Retrieval: the standalone question is embedded and the top-k chunks come back with their
   cosine scores (optionally re-ranked with MMR) through the `search` callable.
3. Threshold: chunks below the relevance threshold are dropped; if none is left the answer is
   NO_ANSWER, without asking the model to guess.
4. Prompt: the kept chunks are numbered [1], [2], ... in a ChatPromptTemplate; chunks that do
   not fit the context budget are cut from the lowest-ranked up, and reported.
5. The chat model streams the answer (greedy by default, so the same inputs give the same text).
6. Citations: given the encoder, the finished turn carries the answer with a [n] marker after
   each sentence, linked to the chunk it is closest to (models/rag/citations.py).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace

from langchain_core.messages import convert_to_openai_messages
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from models.chat import ChatPrompt, PromptTooLong, build_prompt, message_text, stream_answer
from models.rag.citations import CitedAnswer, cite
from models.rag.hits import Hit
from models.similarity import split_sentences

NO_ANSWER = "The documents don't contain the answer to this question."
MAX_PREVIOUS_CHARS = 500  # of the previous question, when a rejected rewrite falls back to joining them

REWRITE_PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Rewrite the follow-up question as one standalone question that can be understood "
               "without the conversation. Reply with the question only."),
    # One worked example: a 135M model follows an example far better than an instruction.
    ("human", "Conversation:\nUser: What is BERT?\nAssistant: BERT is an encoder-only model.\n\n"
              "Follow-up question: How was it trained?"),
    ("ai", "How was BERT trained?"),
    ("human", "Conversation:\n{history}\n\nFollow-up question: {question}"),
])
# Words that make a question lean on the conversation ("how was *it* trained?").
_FOLLOW_UP = re.compile(r"\b(it|its|they|them|their|this|that|these|those|he|she|his|her|one|ones|"
                        r"former|latter|above|same|also|too|else)\b|^(and|but|so|what about|how about)\b",
                        re.IGNORECASE)
_STOP = {"what", "which", "who", "how", "why", "when", "where", "does", "do", "did", "is", "are", "was",
         "were", "the", "a", "an", "of", "in", "to", "and", "it", "its", "they", "them", "their", "this",
         "that", "for", "on", "with", "about", "be", "can", "many", "much"}

ANSWER_PROMPT = ChatPromptTemplate.from_messages([
    ("system", "You answer questions using only the numbered context passages below. "
               "Answer in one to three short sentences and cite passages like [1]. If the passages "
               "do not contain the answer, say: " + NO_ANSWER),
    ("human", "Context:\n{context}\n\nQuestion: {question}"),
])

PLAIN_PROMPT = ChatPromptTemplate.from_messages([
    ("system", "You are a helpful assistant. Answer in one to three short sentences."),
    ("human", "{question}"),
])


@dataclass
class RagTurn:
    """Everything one question went through; yielded repeatedly as the answer streams."""

    question: str
    standalone: str = ""
    rewrite_note: str = ""  # how the standalone question was made
    hits: list[Hit] = field(default_factory=list)  # everything retrieved, best first
    used: list[Hit] = field(default_factory=list)  # numbered [1..n] in the prompt
    cut: list[Hit] = field(default_factory=list)  # above the threshold but did not fit
    prompt: ChatPrompt | None = None
    answer: str = ""
    grounded: bool = True  # False when nothing passed the threshold
    cited: CitedAnswer | None = None  # set on the finished turn when an encoder was given
    done: bool = False

    @property
    def text(self) -> str:
        """The answer as shown: with its [n] markers once it is cited."""
        return self.cited.text if self.cited else self.answer


def to_chat_messages(prompt_value) -> list[dict]:
    """A langchain prompt value -> [{"role", "content"}] for the tokenizer's chat template."""
    return [{"role": m["role"], "content": m["content"]}
            for m in convert_to_openai_messages(prompt_value.to_messages())]



_CITATION = re.compile(r"(?<!\s)\s*\[\d+\]")  # a [n] marker and the space before it; linear in the text


def format_history(history: list[dict], max_turns: int = 4, max_chars: int = 300) -> str:
    lines = []
    for message in history[-max_turns:]:
        text = message_text(message.get("content"))
        content = _CITATION.sub("", text[:2 * max_chars]).strip()
        if len(content) > max_chars or len(text) > 2 * max_chars:
            content = content[:max_chars] + "…"
        lines.append(f"{'User' if message['role'] == 'user' else 'Assistant'}: {content}")
    return "\n".join(lines)


def _complete(lm, max_new_tokens: int, context_tokens: int):
    """A runnable: langchain prompt value -> the model's greedy completion."""

    def run(prompt_value) -> str:
        prompt = build_prompt(lm, to_chat_messages(prompt_value), max_new_tokens=max_new_tokens,
                              context_tokens=context_tokens)
        text = ""
        for partial in stream_answer(lm, prompt, max_new_tokens=max_new_tokens, temperature=0.0):
            text = partial
        return text

    return RunnableLambda(run)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9][a-z0-9-]*", text.lower()) if w not in _STOP}


def needs_rewrite(history: list[dict], question: str) -> bool:
    return bool(history) and (bool(_FOLLOW_UP.search(question)) or len(question.split()) < 4)


def _clean_rewrite(text: str, question: str, history_text: str) -> str | None:
    """The model's rewrite if it is a plausible standalone question, else None: it keeps the
    follow-up's own content words and brings in at least one from the conversation."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"^(standalone question|question)\s*:\s*", "", line, flags=re.IGNORECASE).strip(" \"'")
    own, words = _content_words(question), _content_words(line)
    ok = (line.endswith("?") and len(line.split()) <= 2 * len(question.split()) + 15
          and own <= words and bool((words - own) & _content_words(history_text)))
    return line if ok else None


def rewrite_question(lm, history: list[dict], question: str, *, context_tokens: int = 2048) -> tuple[str, str]:
    """(standalone question, how it was made). Only follow-ups that lean on the conversation are
    rewritten; when the small model's rewrite drifts, the previous question is prepended instead."""
    if not needs_rewrite(history, question):
        return question, "already standalone" if history else "first question"
    chain = REWRITE_PROMPT | _complete(lm, 40, context_tokens) | RunnableLambda(
        lambda text: _clean_rewrite(text, question, conversation))
    conversation = format_history(history)
    rewritten = chain.invoke({"history": conversation, "question": question})
    if rewritten:
        return rewritten, "rewritten by the model"
    previous = next((message_text(m["content"]) for m in reversed(history) if m["role"] == "user"), "")
    previous = previous[:MAX_PREVIOUS_CHARS].rsplit(" ", 1)[0] if len(previous) > MAX_PREVIOUS_CHARS else previous
    return f"{previous} {question}".strip(), "model rewrite rejected: joined with the previous question"


def format_context(hits: list[Hit]) -> str:
    parts = []
    for n, hit in enumerate(hits, 1):
        parts.append(f"[{n}] {hit.text}")
    return "\n\n".join(parts)


def fit_prompt(lm, question: str, hits: list[Hit], *, max_new_tokens: int,
               context_tokens: int) -> tuple[ChatPrompt, list[Hit], list[Hit]]:
    """Build the answer prompt with as many chunks as fit; returns (prompt, used, cut)."""
    used = list(hits)
    while True:
        value = ANSWER_PROMPT.invoke({"context": format_context(used), "question": question})
        try:
            prompt = build_prompt(lm, to_chat_messages(value), max_new_tokens=max_new_tokens,
                                  context_tokens=context_tokens)
            return prompt, used, hits[len(used):]
        except PromptTooLong:
            if not used:
                raise
            used = used[:-1]


def checked_question(question: str | None) -> str:
    """The question stripped; ValueError with a sentence for the user when it is empty."""
    question = (question or "").strip()
    if not question:
        raise ValueError("Type a question first.")
    return question


def retrieve(turn: RagTurn, lm, search: Callable[[str], list[Hit]], history: list[dict] | None, *,
             threshold: float, context_tokens: int) -> Generator[RagTurn, None, list[Hit]]:
    """Steps 1-3 of a turn, shared by this chain and models/rag/grounded.py: rewrite (the turn is
    yielded once it has its standalone question), retrieve, and drop the chunks under the threshold.
    Returns the chunks left; with none, the turn is finished as NO_ANSWER (not yet yielded)."""
    turn.standalone, turn.rewrite_note = rewrite_question(lm, history or [], turn.question,
                                                          context_tokens=context_tokens)
    yield turn
    turn.hits = search(turn.standalone)
    relevant = [h for h in turn.hits if h.score >= threshold]
    if not relevant:
        turn.grounded, turn.answer, turn.done = False, NO_ANSWER, True
    return relevant


def answer(lm, search: Callable[[str], list[Hit]], question: str, history: list[dict] | None = None, *,
           threshold: float = 0.3, max_new_tokens: int = 120, context_tokens: int = 2048,
           temperature: float = 0.0, seed: int = 0, encoder=None) -> Iterator[RagTurn]:
    """Run the chain, yielding the RagTurn after each step and each streamed token; the last one
    is done, and cited when an encoder is given."""
    turn = RagTurn(question=checked_question(question))
    relevant = yield from retrieve(turn, lm, search, history, threshold=threshold, context_tokens=context_tokens)
    if not relevant:
        yield turn
        return
    turn.prompt, turn.used, turn.cut = fit_prompt(lm, turn.standalone, relevant, max_new_tokens=max_new_tokens,
                                                  context_tokens=context_tokens)
    yield turn
    stop = threading.Event()
    for text in stream_answer(lm, turn.prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                              seed=seed, stop=stop):
        turn.answer, looping = trim_repeats(text)
        yield turn
        if looping:  # greedy decoding of a small model loops; stop instead of repeating
            stop.set()
            break
    turn.answer = tidy_answer(turn.answer)
    if encoder is not None:
        turn.cited = cite(encoder, turn.answer, turn.used)
    turn.done = True
    yield replace(turn)


def trim_repeats(text: str) -> tuple[str, bool]:
    """Cut the text before the first complete sentence that repeats an earlier one."""
    sentences = split_sentences(text)
    seen: set[str] = set()
    for i, sentence in enumerate(sentences[:-1]):  # the last one may still be growing
        key = sentence.lower()
        if key in seen:
            start = text.find(sentence, text.find(sentences[i - 1]) + len(sentences[i - 1]))
            return text[:start].rstrip(), True
        seen.add(key)
    return text, False


def tidy_answer(text: str) -> str:
    """Drop the markdown heading marks the model copies from chunks."""
    return re.sub(r"(?m)^#+\s*", "", text).strip()


def answer_without_retrieval(lm, question: str, *, max_new_tokens: int = 120, context_tokens: int = 2048,
                             temperature: float = 0.0, seed: int = 0) -> Iterator[str]:
    """The same model on the bare question, for the side-by-side view of what RAG changes."""
    value = PLAIN_PROMPT.invoke({"question": question})
    prompt = build_prompt(lm, to_chat_messages(value), max_new_tokens=max_new_tokens, context_tokens=context_tokens)
    stop = threading.Event()
    for text in stream_answer(lm, prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                              stop=stop):
        text, looping = trim_repeats(text)
        yield text
        if looping:
            stop.set()
            break

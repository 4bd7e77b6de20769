"""The grounded answer step: read the best sentences, check the answer, and decide what to show.

After retrieval (models/rag/chain.py's rewrite and the store's search), one question turn:

1. Threshold: chunks under the cosine threshold are dropped; with none left, the documents don't
   contain the answer (the model is not asked).
2. Context: the reader's sentences with their neighbours (models/rag/reader.py), in a prompt that
   fits the context budget (chunks are cut from the lowest-ranked up).
3. Signals and the refusal rule's first step (models/rag/refusal.py): refuse before reading when
   nothing retrieved is close enough.
4. The model streams its answer, stopped at the first complete answer.
5. Check (models/rag/verify.py): each sentence against the retrieved sentences; names, numbers,
   dates and units must be in the chunks it cites; figures found nowhere in what the model read
   are `invented`.
6. Decision: a supported answer stands (with [n] markers); a declined or unsupported one becomes
   the quoted best sentence when the evidence is strong (the unsupported claim struck through and
   marked), else the refusal.

Every switch lives in `Answering`; bench/rag_quality.py turns them off one at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from models.chat import ChatPrompt, PromptTooLong, build_prompt
from models.rag.chain import NO_ANSWER, RagTurn, checked_question, retrieve, to_chat_messages
from models.rag.citations import CitedAnswer, CitedSentence, Source
from models.rag.hits import Hit
from models.rag.reader import Context, Reading, Sentence, build_context, denies, model_refused, prompt_for, read, tidy
from models.rag.refusal import DEFAULT_RULE, Decision, RefusalRule, Signals
from models.rag.verify import Verification, invented_facts, verify

QUOTE_INTRO = "The documents say:"


@dataclass(frozen=True)
class Answering:
    """What happens between retrieval and the answer; each switch is a row of the ablation."""

    reading: Reading = Reading()
    verify: bool = True  # check the answer against the retrieved sentences, quote instead of a failed claim
    rule: RefusalRule | None = DEFAULT_RULE  # None: only the cosine threshold refuses (as before issue 18)


@dataclass
class GroundedTurn(RagTurn):
    """A RagTurn with what the reader, the checker and the rule saw."""

    context: Context | None = None
    signals: Signals | None = None
    decision: Decision | None = None
    verification: Verification | None = None
    draft: str = ""  # the model's own answer, tidied, before the check
    quote: Sentence | None = None  # the retrieved sentence shown instead of the model's answer
    rule: RefusalRule | None = None  # the refusal rule that decided

    @property
    def supported(self) -> bool | None:
        """The checker's verdict on the model's answer (None: not checked, or no answer)."""
        return None if self.verification is None or not self.verification.claims else self.verification.supported

    @property
    def refused(self) -> bool:
        return self.answer == NO_ANSWER


def answer(lm, search: Callable[[str], list[Hit]], question: str, history: list[dict] | None = None, *,
           encoder, coverage: Callable[[str, str], float], answering: Answering = Answering(),
           threshold: float = 0.3, context_tokens: int = 2048, temperature: float = 0.0, seed: int = 0,
           cache: dict | None = None) -> Iterator[GroundedTurn]:
    """Run the turn, yielding it after each step and streamed token; the last one is done and cited.
    `coverage(question, text)` is the keyword coverage signal; `cache` (optional) maps a prompt to
    the model's finished answer, so a benchmark can vary the later steps without decoding again."""
    turn = GroundedTurn(question=checked_question(question), rule=answering.rule)
    relevant = yield from retrieve(turn, lm, search, history, threshold=threshold, context_tokens=context_tokens)
    if not relevant:
        turn.decision = Decision("refuse", f"no chunk reached the cosine threshold {threshold:.2f}")
        yield turn
        return
    reading = answering.reading
    turn.context, turn.prompt, turn.used, turn.cut = fit_reader_prompt(lm, encoder, turn.standalone, relevant, reading,
                                                                       context_tokens=context_tokens)
    turn.signals = signals_of(turn.standalone, turn.used, turn.context, coverage)
    early = answering.rule.before_reading(turn.signals) if answering.rule else None
    if early is not None:
        turn.decision, turn.answer, turn.done = early, NO_ANSWER, True
        yield turn
        return
    yield turn
    key = (turn.prompt.text, reading.max_new_tokens, reading.first_answer, temperature, seed)
    if cache is not None and key in cache:
        turn.answer = cache[key]
    else:
        for text in read(lm, turn.prompt, reading, temperature=temperature, seed=seed):
            turn.answer = text
            yield turn
        if cache is not None:
            cache[key] = turn.answer
    finish(turn, encoder, answering)
    yield replace(turn)


def fit_reader_prompt(lm, encoder, question: str, hits: list[Hit], reading: Reading, *,
                      context_tokens: int) -> tuple[Context, ChatPrompt, list[Hit], list[Hit]]:
    """The reader's context and prompt with as many chunks as fit; (context, prompt, used, cut)."""
    template = prompt_for(reading)
    used = list(hits)
    while True:
        context = build_context(encoder, question, [h.text for h in used], reading)
        value = template.invoke({"context": context.text, "question": question})
        try:
            prompt = build_prompt(lm, to_chat_messages(value), max_new_tokens=reading.max_new_tokens,
                                  context_tokens=context_tokens)
            return context, prompt, used, hits[len(used):]
        except PromptTooLong:
            if len(used) <= 1:
                raise
            used = used[:-1]


def signals_of(question: str, used: list[Hit], context: Context, coverage: Callable[[str, str], float]) -> Signals:
    """The refusal rule's signals before the model reads (see models/rag/refusal.py)."""
    best = context.best
    return Signals(top_cosine=max(h.score for h in used), fused=used[0].fused if used else None,
                   coverage=coverage(question, context.text), best_sentence=best.score if best else 0.0)


def finish(turn: GroundedTurn, encoder, answering: Answering) -> None:
    """Check the model's answer, decide, and compose what the turn shows (sets turn.done)."""
    turn.draft = tidy(turn.answer)
    declined = model_refused(turn.draft)
    invented = denial = None  # not checked
    if answering.verify and not declined:
        turn.verification = verify(encoder, turn.draft, turn.context)
        invented = tuple(invented_facts(turn.draft, " ".join(text for _, text in turn.context.passages)))
        denial = denies(turn.draft)
    on_topic = turn.verification.on_topic if turn.verification and turn.verification.claims else None
    turn.signals = replace(turn.signals, model_refused=declined, supported=turn.supported, on_topic=on_topic,
                           invented=invented, denies=denial)
    turn.decision = decide(turn.signals, answering)
    turn.answer, turn.quote = compose(turn.decision, turn.draft, turn.verification, turn.context)
    turn.cited = cited_answer(turn, turn.used)
    turn.done = True


def decide(signals: Signals, answering: Answering) -> Decision:
    """The rule's decision; without a rule, an unsupported answer is quoted and a declined one shown."""
    if answering.rule is not None:
        return answering.rule.after_reading(signals)
    if signals.supported is False or signals.on_topic is False:
        return Decision("quote", "the model's answer is not supported or not about the question: the best "
                                 "sentence is quoted")
    return Decision("answer", "no refusal rule: the model's answer is shown")


def compose(decision: Decision, draft: str, verification: Verification | None,
            context: Context) -> tuple[str, Sentence | None]:
    """(the answer text with [n] markers, the quoted sentence or None) for a decision."""
    if decision.refused:
        return NO_ANSWER, None
    claims = verification.claims if verification else []
    if decision.action == "answer":
        if not claims:
            return draft, None
        return " ".join(f"{c.text} [{c.cites[0]}]" if c.supported else c.text for c in claims), None
    evidence = next((c.evidence for c in claims if not c.supported and c.on_topic and c.evidence is not None), None)
    quote = (context.answer_at(evidence) if evidence is not None else None) or context.best_answer
    kept = [f"{c.text} [{c.cites[0]}]" if c.supported and c.on_topic else
            f"~~{c.text}~~ (unsupported: {c.reason})" if not c.supported else
            f"~~{c.text}~~ (off-topic: it rests on a sentence about something else)" for c in claims]
    return " ".join(kept + [f"{QUOTE_INTRO} “{quote.text}” [{quote.chunk + 1}]"]), quote


def asserted(answer: str) -> str:
    """The answer without its struck-through unsupported or off-topic claims (what it asserts)."""
    return re.sub(r"~~.*?~~ \((unsupported|off-topic): [^)]*\)\s*", "", answer)


def cited_answer(turn: GroundedTurn, hits: list[Hit]) -> CitedAnswer:
    """The sources panel's data: each shown sentence linked to its chunk, the evidence highlighted."""
    sources = [Source(n, hit) for n, hit in enumerate(hits, 1)]
    sentences = []
    claims = turn.verification.claims if turn.verification and turn.decision.action == "answer" else []
    evidence = [(c.text, c.cites[0] if c.supported else None, c.similarity, c.evidence if c.supported else None)
                for c in claims]
    if turn.quote is not None:
        evidence.append((turn.quote.text, turn.quote.chunk + 1, 1.0, turn.quote))
    for i, (text, number, score, sentence) in enumerate(evidence):
        sentences.append(CitedSentence(text, number, score))
        if number is None or sentence is None or number > len(sources):
            continue
        source = sources[number - 1]
        source.cited_by.append(i)
        start = source.hit.text.find(sentence.text)
        if start >= 0 and source.highlight is None:
            source.highlight = (start, start + len(sentence.text))
    return CitedAnswer(turn.answer, sentences, sources)


def checks(turn: GroundedTurn) -> dict:
    """The API's view of the check and the rule: supported, refused, the model's draft, each claim,
    the signals and the decision (with the rule that made it)."""
    claims = turn.verification.claims if turn.verification else []
    return {
        "supported": turn.supported, "refused": turn.refused, "draft": turn.draft,
        "claims": [{"text": c.text, "supported": c.supported, "cites": c.cites, "missing": c.missing,
                    "reason": c.reason, "similarity": round(c.similarity, 4),
                    "evidence": c.evidence.text if c.evidence else None} for c in claims],
        "quote": turn.quote.text if turn.quote else None,
        "signals": turn.signals.as_dict() if turn.signals else None,
        "decision": {"action": turn.decision.action, "reason": turn.decision.reason} if turn.decision else None,
    }

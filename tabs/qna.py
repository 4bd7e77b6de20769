"""QnA bot tab: ask a question, optionally about a passage, and watch the answer stream in.

What it teaches: an instruction-tuned model answers through a chat template (the exact
prompt it saw is shown, with its token count); history has to fit a context budget; a
passage grounds the answer: the document chat's reader hands the model the passage's sentences
closest to the question, checks the answer against the passage and refuses or quotes when it is
not supported (models/qna/passage.py), and the supporting sentence is highlighted; an extractive
model instead points at a span of the passage.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from models.chat import stream_answer
from models.chat_history import cap_history
from models.generation.service import GenerationService, served
from models.qna import prompt as qna
from models.qna.extractive import extract_answer
from models.qna.passage import passage_turns, shown_text
from models.rag.grounded import Answering
from models.rag.reader import Reading
from models.registry import EXTRACTIVE_QA, ModelRegistry, ModelUnavailable
from models.time_limit import within
from tabs.common import generation_queue, time_limit_note, user_errors
from tabs.handles import Action, Call, TabHandle

GENERATIVE = "Generative (SmolLM2 writes the answer)"
EXTRACTIVE = "Extractive (a span of the passage)"
EXAMPLES = Path(__file__).parent.parent / "assets" / "examples" / "qna.json"
DEFAULT_MAX_NEW_TOKENS = 192
MAX_SEED = 2**31 - 1


def _token_note(prepared: qna.PreparedQuestion, settings, max_new_tokens: int) -> str:
    return (f"**{prepared.prompt.n_tokens} tokens** in the prompt; {max_new_tokens} reserved for the "
            f"answer; context budget {settings.context_tokens}.")


def seed_value(seed) -> int:
    """The seed as torch takes it: whatever the API sent (None, a float, 1e300, NaN) becomes 0..MAX_SEED."""
    try:
        return int(float(seed or 0)) % (MAX_SEED + 1)
    except (ValueError, OverflowError):
        return 0


def _notice(lines: list[str]) -> str:
    return "\n".join(f"ℹ️ {line}" for line in lines)


@user_errors
def respond(registry: ModelRegistry, settings, question: str, context: str, mode: str, history: list | None,
            max_new_tokens: int, temperature: float, seed: int, progress=gr.Progress(),
            generation: GenerationService | None = None):
    """Stream (chat, question box, prompt text, token note, passage highlight, notice)."""
    history = cap_history(history)  # client-sent: bounded before any tokenizer or regex reads it
    if not (question or "").strip():
        gr.Warning("Type a question first.")
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return
    if mode == EXTRACTIVE:
        yield from _respond_extractive(registry, question, context, history)
        return
    if not registry.is_loaded("chat"):
        progress(0.1, desc="Loading SmolLM2 (first use only)…")
    lm = served(registry.chat_model(), generation)
    max_new_tokens = int(max_new_tokens)
    prepared = qna.prepare_question(lm, question, context, history, max_new_tokens=max_new_tokens,
                                    context_tokens=settings.context_tokens)
    history += [{"role": "user", "content": prepared.question}, {"role": "assistant", "content": ""}]
    if prepared.context:  # the passage, already cut to the context budget, goes to the reader
        yield from _respond_from_passage(registry, settings, lm, prepared, history, max_new_tokens,
                                         float(temperature), seed_value(seed))
        return
    token_note = _token_note(prepared, settings, max_new_tokens)
    notice = _notice(prepared.notices)
    passage = [(prepared.context, None)] if prepared.context else None
    yield history, "", prepared.prompt.text, token_note, passage, notice
    answer = ""
    for answer in stream_answer(lm, prepared.prompt, max_new_tokens=max_new_tokens,
                                temperature=float(temperature), seed=seed_value(seed)):
        history[-1] = {"role": "assistant", "content": answer}
        yield history, "", prepared.prompt.text, token_note, passage, notice
    if not answer.strip():
        history[-1] = {"role": "assistant",
                       "content": "(the model produced no text; try again or raise the temperature)"}
    if prepared.context and answer.strip():
        passage, score = qna.supporting_sentence(registry.sentence_encoder(), answer, prepared.context)
        notice = _notice(prepared.notices + [f"Highlighted: the passage sentence closest to the answer "
                                             f"(cosine {score:.2f}, all-MiniLM-L6-v2)."])
    yield history, "", prepared.prompt.text, token_note, passage, notice


def _respond_from_passage(registry: ModelRegistry, settings, lm, prepared: qna.PreparedQuestion, history: list,
                          max_new_tokens: int, temperature: float, seed: int):
    """Passage mode: stream the reader's answer, then the checked answer, the sentence it rests on
    and the decision."""
    answering = Answering(Reading(max_new_tokens=max_new_tokens))
    passage = [(prepared.context, None)]
    turn = None
    for turn in passage_turns(lm, registry.sentence_encoder(), prepared.question, prepared.context,
                              answering=answering, context_tokens=settings.context_tokens, temperature=temperature,
                              seed=seed):
        history[-1] = {"role": "assistant", "content": shown_text(turn) or "…"}
        prompt_text = turn.prompt.text if turn.prompt else ""
        token_note = (f"**{turn.prompt.n_tokens} tokens** in the prompt: the passage's sentences closest to the "
                      f"question; {max_new_tokens} reserved for the answer." if turn.prompt else "")
        yield history, "", prompt_text, token_note, passage, _notice(prepared.notices)
    passage, score = qna.rested_on(turn, prepared.context)
    lines = prepared.notices + [f"{turn.decision.action.capitalize()}: {turn.decision.reason}."]
    if turn.verification is not None and turn.verification.claims:
        lines.append("Checked against the passage: " + ("supported." if turn.supported else "not supported."))
    lines.append(f"Highlighted: the passage sentence the answer rests on (cosine {score:.2f}, all-MiniLM-L6-v2).")
    yield history, "", prompt_text, token_note, passage, _notice(lines)


def _respond_extractive(registry: ModelRegistry, question: str, context: str, history: list):
    if not (context or "").strip():
        gr.Warning("Extractive mode picks the answer out of a passage: paste one first.")
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return
    try:
        model, tokenizer = registry.extractive_qa()
    except ModelUnavailable as exc:
        gr.Warning("Extractive mode is not available here (see the note).")
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), _notice([str(exc)])
        return
    span = extract_answer(model, tokenizer, question.strip(), context)
    history += [{"role": "user", "content": question.strip()},
                {"role": "assistant", "content": f"{span.text}  (score {span.score:.0%})"}]
    note = f"Extractive answer: characters {span.start}-{span.end} of the passage, P(start)·P(end) = {span.score:.3f}."
    yield history, "", "", note, qna.span_segments(context, span), ""


@user_errors
def answer_text(registry: ModelRegistry, settings, question: str, context: str = "",
                generation: GenerationService | None = None) -> str:
    """API: the final greedy answer to `question` (about `context` when given)."""
    if not (question or "").strip():
        raise gr.Error("The question is empty.")
    lm = served(registry.chat_model(), generation)
    prepared = qna.prepare_question(lm, question, context, [], max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
                                    context_tokens=settings.context_tokens)
    if prepared.context:
        turn = None
        for turn in within(passage_turns(lm, registry.sentence_encoder(), prepared.question,  # noqa: B007
                                         prepared.context, context_tokens=settings.context_tokens),
                           settings.job_time_limit_s):
            pass
        return shown_text(turn)
    answer = ""
    for answer in within(stream_answer(lm, prepared.prompt, max_new_tokens=DEFAULT_MAX_NEW_TOKENS),  # noqa: B007
                         settings.job_time_limit_s):
        pass  # keep the last, complete text
    return answer


def clear():
    return [], "", "", "", None, ""


def build(services, settings) -> TabHandle:
    registry = services.registry
    extractive_ready = registry.is_configured(EXTRACTIVE_QA)
    with gr.Row():
        with gr.Column(scale=3):
            chat = gr.Chatbot(label="Conversation", height=420, elem_id="qna-chat",
                              placeholder="Ask SmolLM2-135M-Instruct anything, or paste a passage and ask about it.")
            question = gr.Textbox(label="Question", placeholder="What is the capital of France?", lines=2,
                                  max_lines=6, elem_id="qna-question")
            with gr.Row():
                ask = gr.Button("Ask", variant="primary", elem_id="qna-ask")
                stop = gr.Button("Stop", variant="stop")
                clear_btn = gr.Button("Clear")
            notice = gr.Markdown(elem_id="qna-notice")
        with gr.Column(scale=2):
            mode = gr.Radio([GENERATIVE, EXTRACTIVE], value=GENERATIVE, label="Mode",
                            info=None if extractive_ready else
                            "Extractive needs a QA model (set GENAI_LAB_QA_MODEL); none ships offline.")
            context = gr.Textbox(label="Passage (optional)", lines=7, max_lines=14,
                                 placeholder="Paste a passage: the answer will be grounded in it.")
            passage_view = gr.HighlightedText(label="Passage: the sentence that supports the answer",
                                              color_map={qna.SUPPORT_LABEL: "green"}, combine_adjacent=True,
                                              show_legend=False)
            with gr.Accordion("Settings", open=False) as knobs:
                max_new_tokens = gr.Slider(16, 512, value=DEFAULT_MAX_NEW_TOKENS, step=16, label="Max new tokens")
                temperature = gr.Slider(0, 1.5, value=0, step=0.05, label="Temperature",
                                        info="0 = greedy (always the most likely token)")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED,
                                 label="Seed (used when temperature > 0)")
            with gr.Accordion("What the model saw", open=False):
                prompt_tokens = gr.Markdown()
                prompt_view = gr.Code(label="Exact prompt (chat template applied)", language=None,
                                      interactive=False, lines=8, wrap_lines=True)
    gr.Examples(json.loads(EXAMPLES.read_text()), inputs=[question, context], label="Examples (work offline)")

    # ---- register listeners ----
    def ask_handler(question, context, mode, history, max_new_tokens, temperature, seed, progress=gr.Progress()):
        yield from within(respond(registry, settings, question, context, mode, history, max_new_tokens, temperature,
                                  seed, progress, services.generation),
                          settings.job_time_limit_s, on_timeout=lambda: gr.Warning(time_limit_note(settings)))

    def qna_answer(question: str, context: str = "") -> str:
        """The final greedy answer to a question, grounded in the context when one is given."""
        return answer_text(registry, settings, question, context, services.generation)

    inputs = [question, context, mode, chat, max_new_tokens, temperature, seed]
    outputs = [chat, question, prompt_view, prompt_tokens, passage_view, notice]
    ask_call = Call(ask_handler, inputs, outputs, generation_queue(settings))
    clear_call = Call(clear, None, outputs, {"queue": False})
    # The API page shows the documented endpoint only (qna_answer); the chat's own handler stays callable
    # by gradio_client (undocumented) and the Clear button's is private.
    ask_event = gr.on([ask.click, question.submit], **ask_call.kwargs(), api_name="qna_chat",
                      api_visibility="undocumented")
    stop.click(None, None, None, cancels=[ask_event], api_name="qna_stop")  # no function: private
    clear_btn.click(**clear_call.kwargs(), api_name="qna_clear", api_visibility="private")
    gr.api(qna_answer, api_name="qna_answer", **generation_queue(settings))
    # conversation: a lesson step may start it afresh (set: {conversation: []}) and keep its question.
    components = {"question": question, "passage": context, "mode": mode, "max_new_tokens": max_new_tokens,
                  "temperature": temperature, "seed": seed, "conversation": chat}
    actions = {"ask": Action((ask_call,), "Ask", ("chat", "encoder"), "qna-chat"),
               "clear": Action((clear_call,), "Clear", (), "qna-chat")}
    return TabHandle("qna", components, actions, advanced=[knobs])

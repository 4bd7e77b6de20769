"""The QnA adapter on the real SmolLM2 and MiniLM: grounding, determinism, budgets, stop."""

from __future__ import annotations

import threading

import gradio as gr
import pytest
from conftest import run_at_once

from models.chat import build_prompt, stream_answer
from models.qna import prompt as qna
from models.qna.extractive import extract_answer
from models.registry import ModelUnavailable
from tabs import qna as qna_tab

PARIS = ("Berlin is the capital of Germany. Paris is the capital and largest city of France. "
         "The Eiffel Tower was completed in 1889.")




def answer(lm, question, context="", history=None, **kwargs):
    prepared = qna.prepare_question(lm, question, context, history, max_new_tokens=kwargs.pop("max_new_tokens", 40),
                                    context_tokens=2048)
    text = ""
    for text in stream_answer(lm, prepared.prompt, max_new_tokens=40, **kwargs):  # noqa: B007
        pass
    return prepared, text


def test_answer_from_passage_names_paris_and_highlights_its_sentence(lm, registry):
    prepared, text = answer(lm, "What is the capital of France?", PARIS)
    assert "Paris" in text
    assert "Context:" in prepared.prompt.text and PARIS in prepared.prompt.text
    segments, score = qna.supporting_sentence(registry.sentence_encoder(), text, PARIS)
    supported = [piece for piece, label in segments if label == qna.SUPPORT_LABEL]
    assert supported == ["Paris is the capital and largest city of France."]
    assert "".join(piece for piece, _ in segments) == PARIS and score > 0.5


def test_greedy_is_deterministic_and_seeded_sampling_repeats(lm):
    assert answer(lm, "Name a colour.")[1] == answer(lm, "Name a colour.")[1]
    first = answer(lm, "Write a word about the sea.", temperature=1.2, seed=7)[1]
    assert first == answer(lm, "Write a word about the sea.", temperature=1.2, seed=7)[1]


def test_seeded_sampling_repeats_while_another_sampled_answer_runs_at_once(lm):
    """Two model jobs run at once (GENAI_LAB_MODEL_CONCURRENCY=2): a seed still gives one text."""
    question = "Write two sentences about the sea."
    alone = answer(lm, question, temperature=1.2, seed=7)[1]
    together = run_at_once(lambda _: answer(lm, question, temperature=1.2, seed=7)[1], range(2))
    assert together == [alone, alone]


def test_prompt_is_the_chat_template_and_streams_token_by_token(lm):
    prepared = qna.prepare_question(lm, "Say hello.", "", None, max_new_tokens=16, context_tokens=2048)
    assert prepared.prompt.text.startswith("<|im_start|>system") and prepared.prompt.text.endswith(
        "<|im_start|>assistant\n")
    pieces = list(stream_answer(lm, prepared.prompt, max_new_tokens=16))
    assert len(pieces) > 2 and all(b.startswith(a) for a, b in zip(pieces, pieces[1:], strict=False))


def test_old_turns_are_dropped_to_fit_the_budget_with_a_notice(lm):
    long_turn = "tell me about rivers " * 40
    history = []
    for i in range(6):
        history += [{"role": "user", "content": f"{i} {long_turn}"},
                    {"role": "assistant", "content": [{"type": "text", "text": f"answer {i} {long_turn}"}]}]
    prepared = qna.prepare_question(lm, "And the last one?", "", history, max_new_tokens=64, context_tokens=1024)
    assert prepared.prompt.dropped_turns > 0 and prepared.prompt.n_tokens <= 1024 - 64
    assert "And the last one?" in prepared.prompt.text and "5 tell me" in prepared.prompt.text
    assert "0 tell me" not in prepared.prompt.text
    assert any("oldest exchange" in notice for notice in prepared.notices)


def test_over_long_question_and_passage_are_truncated_with_notices(lm):
    prepared = qna.prepare_question(lm, "why " * 600, "word " * 5000, None, max_new_tokens=64, context_tokens=1024)
    assert prepared.prompt.n_tokens <= 1024 - 64
    assert any("question was cut" in n for n in prepared.notices)
    assert any("passage was cut" in n for n in prepared.notices)


def test_stop_event_ends_generation_early(lm):
    prompt = build_prompt(lm, [{"role": "user", "content": "Count from one to one hundred."}],
                          max_new_tokens=200, context_tokens=2048)
    stop = threading.Event()
    pieces = []
    for text in stream_answer(lm, prompt, max_new_tokens=200, stop=stop):
        pieces.append(text)
        if len(pieces) == 3:
            stop.set()
    assert 3 <= len(pieces) <= 5


def test_unicode_and_html_questions_are_answered_as_text(lm):
    prepared, text = answer(lm, "¿Qué es <b>París</b>? 🗼 مرحبا")
    assert "¿Qué es <b>París</b>? 🗼 مرحبا" in prepared.prompt.text and isinstance(text, str)


def test_extractive_mode_without_model_says_so(registry):
    with pytest.raises(ModelUnavailable, match="GENAI_LAB_QA_MODEL"):
        registry.extractive_qa()


def test_extractive_span_lies_in_the_passage(registry, tmp_path):
    """Plumbing check with a QA head on the MiniLM encoder (untrained head: no quality claim)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForQuestionAnswering

    folder = registry.resolve("encoder").location
    torch.manual_seed(0)
    model = BertForQuestionAnswering(AutoConfig.from_pretrained(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    span = extract_answer(model, tokenizer, "What is the capital of France?", PARIS * 20, max_length=128, stride=32)
    assert 0 < span.score <= 1 and span.text == (PARIS * 20)[span.start:span.end] and span.text
    segments = qna.span_segments(PARIS * 20, span)
    assert "".join(piece for piece, _ in segments) == PARIS * 20


class BrokenRegistry:
    """Simulates a chat model that fails to load."""

    def is_loaded(self, key):
        return False

    def chat_model(self):
        raise ModelUnavailable("No source for SmolLM2-135M-Instruct (offline): install the offline package.")


def test_failed_model_load_is_a_clear_message_not_a_traceback(settings):
    run = qna_tab.respond(BrokenRegistry(), settings, "Hi?", "", qna_tab.GENERATIVE, [], 32, 0, 0,
                          progress=lambda *a, **k: None)
    with pytest.raises(gr.Error, match="install the offline package"):
        next(run)


def test_empty_question_sends_nothing(settings):
    run = qna_tab.respond(BrokenRegistry(), settings, "   ", "", qna_tab.GENERATIVE, [], 32, 0, 0,
                          progress=lambda *a, **k: None)
    outputs = next(run)
    assert len(outputs) == 6  # all skipped: the broken model was never asked

"""One request that used to jam or kill the server, sent from outside through the app's HTTP API:
a history the client made up, layer specs that expand to millions, inputs measured in tokens.

Each request gets its answer or a clear message within seconds, and the app keeps serving.
"""

from __future__ import annotations

import time

import pytest
from conftest import patient_client
from gradio_client.exceptions import AppError
from test_hostile_input import still_serving

from models.chat import message_text

GENERATIVE = "Generative (SmolLM2 writes the answer)"


def message(role: str, text: str) -> dict:
    """A chat message as gradio 6's Chatbot takes it over the API."""
    return {"role": role, "content": [{"type": "text", "text": text}]}


def test_client_history_in_the_document_chat_is_capped_before_use(client, app_url):
    """A 360,000-character 'question' and a 100,000-space answer in the history the client sends:
    the follow-up's standalone question used to carry the whole question back, and the citation
    regex went quadratic on the whitespace run."""
    history = [message("user", "Q" * 360_000), message("assistant", " " * 100_000 + "x")]
    start = time.perf_counter()
    job = client.submit("And how many heads?", history, 2, 0.3, False, True, False, True, api_name="/rag_chat")
    chat, _, standalone, *_ = job.result(timeout=300)
    assert time.perf_counter() - start < 120
    assert len(standalone) < 10_000
    assert all(len(message_text(m["content"])) <= 4_000 for m in chat)
    assert still_serving(app_url)


def test_client_history_in_the_qna_bot_is_capped_before_the_prompt_is_fitted(client, app_url):
    """400 made-up exchanges of 1,000 characters: the prompt fitter used to re-tokenize all of them
    once per dropped exchange."""
    history = [message(role, f"{role} message {i} " + "lorem ipsum " * 80)
               for i in range(400) for role in ("user", "assistant")]
    start = time.perf_counter()
    job = client.submit("What is the capital of France?", "", GENERATIVE, history, 16, 0, 0, api_name="/qna_chat")
    chat, _, prompt, *_ = job.result(timeout=300)
    assert time.perf_counter() - start < 120  # uncapped: many minutes
    assert len(chat) <= 42 and message_text(chat[-2]["content"]) == "What is the capital of France?"
    assert "capital of France" in prompt
    assert still_serving(app_url)


@pytest.mark.parametrize("spec", ["0-20000000", "0-99999999999999999999", "-5--1", "3-1,x"])
def test_attention_layer_specs_that_expand_to_millions_get_a_message(app_url, spec):
    client = patient_client(app_url)
    start = time.perf_counter()
    with pytest.raises(AppError, match="does not exist|is not a layer|Layer"):
        client.predict("encoder", "The cat sat on the mat.", "", 0, False, spec, api_name="/attention_views")
    assert time.perf_counter() - start < 60
    assert still_serving(app_url)


ASTRAL = "𝔄𝔅ℭ𝔇𝔈𝔉𝔊ℌ🗼🥐" * 190  # 1,900 characters (under the character limits), thousands of tokens


def test_document_chat_questions_are_bounded_in_tokens_not_only_characters(client, app_url):
    with pytest.raises(AppError, match="tokens long"):
        client.predict(ASTRAL, 2, 0.3, False, False, api_name="/rag_ask")
    assert still_serving(app_url)

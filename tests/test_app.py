"""The whole app on loopback: scriptable through gradio_client, every listener named."""

from __future__ import annotations

import time
import urllib.request


def test_page_is_served_fast_without_loading_models(app_url, registry):
    start = time.perf_counter()
    with urllib.request.urlopen(app_url, timeout=30) as response:
        assert response.status == 200 and b"genai-lab" in response.read()
    assert time.perf_counter() - start < 10


def test_qna_answer_endpoint(client):
    answer = client.predict("What is the capital of France?",
                            "Paris is the capital and largest city of France. It lies on the Seine.",
                            api_name="/qna_answer")
    assert "Paris" in answer


def test_qna_chat_endpoint_streams_into_history(client):
    job = client.submit("What is the capital of France?", "Paris is the capital of France.",
                        "Generative (SmolLM2 writes the answer)", [], 32, 0, 0, api_name="/qna_chat")
    history, question, prompt, token_note, passage, notice = job.result(timeout=300)
    assert history[-1]["role"] == "assistant" and "Paris" in str(history[-1]["content"])
    assert question == "" and "<|im_start|>assistant" in prompt and "tokens" in token_note
    assert any(part["class_or_confidence"] for part in passage)


def test_qna_empty_question_is_rejected_with_message(client):
    import pytest
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="empty"):
        client.predict("  ", "", api_name="/qna_answer")


def test_torch_threads_are_the_cores_shared_among_model_jobs(settings):
    from dataclasses import replace

    from models.hardware import intra_op_threads, usable_cores

    cores = usable_cores()
    assert intra_op_threads(replace(settings, torch_threads=0, model_concurrency=1)) == cores
    assert intra_op_threads(replace(settings, torch_threads=0, model_concurrency=2)) == max(1, cores // 2)
    assert intra_op_threads(replace(settings, torch_threads=0, model_concurrency=4 * cores)) == 1
    assert intra_op_threads(replace(settings, torch_threads=3, model_concurrency=2)) == 3

"""Hostile input through the public API: huge prompts, emoji, right-to-left text, HTML/JS.

Each request gets an answer or a clear message, and the app keeps serving afterwards.
"""

from __future__ import annotations

import urllib.request

import pytest

SCRIPT = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def still_serving(app_url: str) -> bool:
    with urllib.request.urlopen(app_url, timeout=30) as response:
        return response.status == 200


def test_100k_character_prompt_is_truncated_not_fatal(client, app_url):
    job = client.submit("why " * 25_000, "", "Generative (SmolLM2 writes the answer)", [], 16, 0, 0,
                        api_name="/qna_chat")
    history, _, prompt, _, _, notice = job.result(timeout=600)
    assert "question was cut" in notice and history[-1]["role"] == "assistant"
    assert len(prompt) < 5_000
    assert still_serving(app_url)


@pytest.mark.parametrize("question", ["مرحبا، ما هي عاصمة فرنسا؟", "🗼🥐 capital of France? 🇫🇷", SCRIPT])
def test_unicode_rtl_emoji_and_markup_questions_are_answered(client, question):
    job = client.submit(question, "Paris is the capital of France.", "Generative (SmolLM2 writes the answer)",
                        [], 16, 0, 0, api_name="/qna_chat")
    history, _, prompt, _, passage, _ = job.result(timeout=300)
    assert question in prompt  # sent to the model as text, unchanged
    assert history[-2]["role"] == "user"

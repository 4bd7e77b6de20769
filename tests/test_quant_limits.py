"""The quantized comparison bounds its prompt in tokens, not only characters, and never computes
full-vocabulary logits for every prompt position."""

from __future__ import annotations

import time

import pytest
import torch
from gradio_client.exceptions import AppError
from test_hostile_input import still_serving

from models.quant import run
from models.quant.inputs import MAX_PROMPT_CHARS

ASTRAL = "𝔄𝔅ℭ𝔇𝔈𝔉𝔊ℌ🗼🥐" * 190  # 1,900 characters (under the character limit), ~7,500 SmolLM2 tokens


@pytest.mark.parametrize("api_name", ["/quant_stream", "/quant_compare"])
def test_a_prompt_under_the_character_limit_but_thousands_of_tokens_is_refused(client, app_url, api_name):
    assert len(ASTRAL) < MAX_PROMPT_CHARS
    args = ("chat", "int8-dynamic", ASTRAL, 64) if api_name == "/quant_stream" else ("chat", ASTRAL, 64)
    start = time.perf_counter()
    with pytest.raises(AppError, match="tokens with the chat template; the comparison takes up to 256"):
        client.predict(*args, api_name=api_name)
    assert time.perf_counter() - start < 60 and still_serving(app_url)


def test_only_the_positions_asked_for_get_logits(lm):
    ids = lm.tokenizer("The lighthouse keeper climbs the stairs at dusk.", return_tensors="pt").input_ids
    every = run.logits_of(lm.model, ids)
    last = run.logits_of(lm.model, ids, 3)
    assert last.shape == (3, every.shape[1]) and torch.allclose(last, every[-3:], atol=1e-4)

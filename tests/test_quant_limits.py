"""The quantized comparison bounds its prompt in tokens, not only characters, and never computes
full-vocabulary logits for every prompt position."""

from __future__ import annotations

import time

import pytest
import torch
from conftest import cancel_mid_run
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


def test_stop_cancels_every_step_of_compare_and_ends_the_stream(app_url, client, registry):
    """The Stop button cancels the streamed comparison and the steps chained after it; a cancelled
    stream stops: the full-precision model runs at most the step it was in, not the 64 tokens asked."""
    import httpx

    config = httpx.get(f"{app_url}config", timeout=60).json()
    ids = {d.get("api_name"): d["id"] for d in config["dependencies"]}
    stop = next(d for d in config["dependencies"] if d.get("api_name") == "quant_stop")
    cancelled = {i for d in config["dependencies"] if d["types"]["cancel"] and d["targets"] == stop["targets"]
                 for i in d["cancels"]}
    assert {ids["quant_stream"], ids["quant_compare"], ids["quant_charts"], ids["quant_details"]} <= cancelled
    after, total = cancel_mid_run(  # the first comparison builds the int8 copy: allow it 5 minutes
        registry.chat_model().model,
        lambda: client.submit("chat", "int8-dynamic", "Count from 1 to 100, separated by commas.", 64,
                              api_name="/quant_stream"), wait_s=300)
    assert after <= 2 and total < 60  # the step in flight, never the 64 tokens
    assert still_serving(app_url)

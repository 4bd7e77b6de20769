"""The decoding playground bounds a request in tokens and memory, and the API takes only the numbers
its controls offer: a prompt of emoji, contrastive search with 20 candidates on a long prompt, and
knobs set to a billion."""

from __future__ import annotations

import time

import pytest
from conftest import cancel_mid_run, patient_client
from gradio_client.exceptions import AppError
from test_hostile_input import still_serving

from models.decoding.config import (
    BEAM,
    CONTRASTIVE,
    MAX_CACHE_POSITIONS,
    UI_RANGES,
    DecodeConfig,
    check_budget,
    clamp_to_ui,
)

ASTRAL = "𝔄𝔅ℭ𝔇𝔈𝔉𝔊ℌ🗼🥐" * 390  # 3,900 characters (under the 4,000-character limit), ~15,000 tokens


def test_a_prompt_is_bounded_in_tokens_not_characters(client, app_url):
    start = time.perf_counter()
    with pytest.raises(AppError, match="tokens; the playground takes up to 1,024"):
        client.predict(ASTRAL, "beam search", api_name="/decode")
    assert time.perf_counter() - start < 60 and still_serving(app_url)


def test_contrastive_search_on_a_long_prompt_is_refused_before_it_copies_the_cache(client, app_url):
    prompt = " ".join(["tide"] * 900)  # ~900 tokens, 4,400 characters would be refused earlier: keep it under
    with pytest.raises(AppError, match="keeps 20 copies"):
        client.predict(prompt[:3990], "contrastive search", 1.0, 50, 1.0, 0.0, 1.0, 1.0, 0, 200, 0, 4, 1.0, 1,
                       0.6, 20, False, api_name="/decode")
    assert still_serving(app_url)


def test_api_numbers_are_clamped_to_the_controls_ranges():
    wild = DecodeConfig(strategy="greedy", temperature=1e300, top_k=10**9, top_p=-4, min_p=float("nan"),
                        typical_p="x", repetition_penalty=0, no_repeat_ngram_size=-5, max_new_tokens=10**9,
                        seed=-(10**40), num_beams=10**6, length_penalty=-1e300, num_return_sequences=0,
                        penalty_alpha=9, contrastive_k=10**9)
    tame = clamp_to_ui(wild)
    for name, (low, high) in UI_RANGES.items():
        assert low <= getattr(tame, name) <= high, name
    assert tame.max_new_tokens == 200 and tame.num_beams == 8 and tame.min_p == DecodeConfig().min_p
    assert 0 <= tame.seed < 2**63


def test_the_memory_budget_counts_beams_and_candidates():
    check_budget(1000, DecodeConfig(strategy=BEAM, num_beams=8, max_new_tokens=24), 49_152)
    with pytest.raises(ValueError, match="positions"):
        check_budget(MAX_CACHE_POSITIONS // 8, DecodeConfig(strategy=BEAM, num_beams=8, max_new_tokens=200), 49_152)
    with pytest.raises(ValueError, match="candidates"):
        check_budget(500, DecodeConfig(strategy=CONTRASTIVE, contrastive_k=20, max_new_tokens=40), 49_152)


def test_api_knobs_set_to_a_billion_still_give_an_answer(client, app_url):
    start = time.perf_counter()
    text = client.predict("Once upon a time", "greedy", 1e9, 10**9, 1e9, 1e9, 1e9, 1e9, 10**9, 8, 10**12,
                          10**9, 1e300, 10**9, 1e9, 10**9, False, api_name="/decode")
    assert isinstance(text, str) and time.perf_counter() - start < 120 and still_serving(app_url)


COUNTING = ", ".join(str(i) for i in range(1, 40))  # raw text: SmolLM2 keeps counting, no end of text
CONTRASTIVE_20 = ("contrastive search", 1.0, 50, 1.0, 0.0, 1.0, 1.0, 0, 200, 0, 4, 1.0, 1, 0.6, 20, False)


def test_stop_ends_the_playgrounds_generation_not_only_the_wait(app_url, registry):
    """The Stop button cancels every run of the tab, and a cancelled run stops: the model runs at most
    the step it was in, not the 200 tokens asked."""
    import httpx

    config = httpx.get(f"{app_url}config", timeout=60).json()
    ids = {d.get("api_name"): d["id"] for d in config["dependencies"]}
    stop = next(d for d in config["dependencies"] if d.get("api_name") == "decoding_stop")
    cancelled = {i for d in config["dependencies"] if d["types"]["cancel"] and d["targets"] == stop["targets"]
                 for i in d["cancels"]}  # gradio adds the cancelling function beside the click's own
    assert {ids["decoding_generate"], ids["decoding_compare"], ids["decoding_preset_generate"]} <= cancelled
    client = patient_client(app_url)
    after, total = cancel_mid_run(registry.chat_model().model,
                                  lambda: client.submit(COUNTING, *CONTRASTIVE_20, api_name="/decoding_generate"))
    assert after <= 2 and total < 100  # the step in flight, never the 200 tokens
    assert still_serving(app_url)

"""Every public endpoint takes only what its controls offer, and none skips the queue.

From outside, over HTTP: each `gr.api` endpoint with a number sent at a billion gets an answer
sized by its control's range, in seconds (the document chat's top_k=1e9 with MMR and threshold -1
used to run for half a minute); every named endpoint is closed to `POST /gradio_api/run/<name>`
(`api_open=False`), and the listeners that run outside the queue are UI plumbing only.
(/decode: tests/test_decoding_limits.py.)
"""

from __future__ import annotations

import re
import time

import httpx
from conftest import patient_client
from test_hostile_input import still_serving

from models.attention.capture import HEATMAP_LIMIT
from models.attention.capture import MAX_NEW_TOKENS as ATTENTION_NEW_TOKENS
from models.rag.turn import TOP_K
from models.tokens.logit_lens import MAX_TOP_K

BILLION = 10**9
# Listeners that answer outside the queue: they only show, hide, clear or fill components (gr.Examples'
# loaders, a lesson's copy of a clear), no model runs.
PLUMBING = re.compile(r"attention_model_kind|rag_compare_toggle|(lesson_)?(qna|rag)_clear(_\d+)?|(\w+_)?example(_\d+)?")


def timed(client, *args, api_name: str):
    start = time.perf_counter()
    result = client.predict(*args, api_name=api_name)
    return result, time.perf_counter() - start


def test_the_document_chat_api_clamps_top_k_and_threshold(app_url):
    answer, seconds = timed(patient_client(app_url), "What do attention heads do?", BILLION, -1.0, True, True,
                            api_name="/rag_ask")
    assert 0 < len(answer["retrieved"]) <= TOP_K[1] and seconds < 240  # first use also indexes the sample corpus
    assert still_serving(app_url)


def test_the_logit_lens_api_clamps_top_k(app_url):
    lens, seconds = timed(patient_client(app_url), "The cat sat on the", False, BILLION, api_name="/logit_lens")
    assert all(len(cell) <= MAX_TOP_K for layer in lens["top"] for cell in layer) and seconds < 240


def test_the_sentence_map_api_clamps_dimensions(app_url):
    smap, _ = timed(patient_client(app_url), ["a cat naps", "a dog barks", "a car honks"], None, BILLION,
                    api_name="/embedding_map")
    assert {len(point) for point in smap["coordinates"]} <= {2, 3}


def test_the_attention_api_clamps_the_tokens_it_generates(app_url):
    client = patient_client(app_url)
    asked, seconds = timed(client, "The cat sat.", "", "decoder", BILLION, BILLION, api_name="/attention")
    prompt_only, _ = timed(client, "The cat sat.", "", "decoder", 0, BILLION, api_name="/attention")
    assert 0 < len(asked["tokens"]) - len(prompt_only["tokens"]) <= ATTENTION_NEW_TOKENS and seconds < 240
    assert len(asked["tokens"]) <= HEATMAP_LIMIT


def test_no_endpoint_skips_the_queue(app_url):
    info = httpx.get(f"{app_url}gradio_api/info", timeout=60).json()
    names = [name.lstrip("/") for name in info["named_endpoints"]]
    assert "decode" in names and "rag_ask" in names
    for name in names:
        response = httpx.post(f"{app_url}gradio_api/run/{name}", json={"data": []}, timeout=60)
        assert response.status_code == 404, name
    config = httpx.get(f"{app_url}config", timeout=60).json()
    unqueued = {d.get("api_name") for d in config["dependencies"]
                if d.get("queue") is False and d.get("backend_fn", True)}
    assert "qna_clear" in unqueued
    assert all(PLUMBING.fullmatch(name or "") for name in unqueued), unqueued

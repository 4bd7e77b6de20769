"""Model jobs have a time limit and Stop stops the work, not just the page's wait.

The app here gives every answer 6 s (GENAI_LAB_JOB_TIME_LIMIT_S); a prompt that makes SmolLM2
count for 512 tokens would otherwise hold its model slot for tens of seconds.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from conftest import launched_demo, patient_client

from models.chat import message_text

GENERATIVE = "Generative (SmolLM2 writes the answer)"
COUNT = "Count from 1 to 1000, one number after another, separated by commas."
LIMIT_S = 6.0


@pytest.fixture(scope="module")
def limited_app(settings, registry, tmp_path_factory):
    own = replace(settings, data_dir=tmp_path_factory.mktemp("limited"), job_time_limit_s=LIMIT_S)
    with launched_demo(own, registry) as (url, demo):
        client = patient_client(url)
        client.predict("Say hi.", "", api_name="/qna_answer")  # the model is loaded before anything is timed
        yield url, demo, client


def running_rows(demo) -> int:
    """Answers the generation service is decoding right now."""
    return demo.services.generation.batcher(demo.registry.chat_model().model).running()


def wait_for_no_rows(demo, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while running_rows(demo) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running_rows(demo) == 0


def test_a_long_answer_is_stopped_at_the_time_limit(limited_app, lm):
    url, demo, client = limited_app
    start = time.perf_counter()
    chat = client.predict(COUNT, "", GENERATIVE, [], 512, 0, 0, api_name="/qna_chat")[0]
    elapsed = time.perf_counter() - start
    answer = message_text(chat[-1]["content"])
    assert answer and len(lm.tokenizer(answer)["input_ids"]) < 400  # cut well before its 512 tokens
    assert elapsed < 60
    assert wait_for_no_rows(demo, 20)  # and the model stopped decoding it


def test_the_api_answer_has_the_same_limit(limited_app, lm):
    _, demo, client = limited_app
    answer = client.predict(COUNT, "", api_name="/qna_answer")
    assert answer and wait_for_no_rows(demo, 5)


def test_stop_ends_the_generation_not_only_the_wait(limited_app):
    url, demo, client = limited_app
    job = client.submit(COUNT, "", GENERATIVE, [], 512, 0, 0, api_name="/qna_chat")
    deadline = time.monotonic() + 120  # a busy machine is slow, a broken app must not hang the suite
    while not (job.outputs() and running_rows(demo)) and not job.done() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the answer is being decoded
    assert running_rows(demo), "the answer never started decoding"
    job.cancel()
    assert wait_for_no_rows(demo, 20)  # the worker frees the row at its next step


def test_an_api_seed_out_of_range_is_taken_not_a_crash(limited_app):
    _, _, client = limited_app
    with pytest.raises(Exception, match="maximum"):  # the box's own range, checked by gradio
        client.predict("Hi", "", GENERATIVE, [], 16, 0.7, 10**30, api_name="/qna_chat")
    from tabs.qna import MAX_SEED, seed_value

    assert [seed_value(v) for v in (None, 3.9, float("nan"), "x", -1)] == [0, 3, 0, 0, MAX_SEED]


def test_the_document_chat_has_a_stop_that_ends_its_answer(limited_app):
    import httpx

    url, demo, client = limited_app
    config = httpx.get(f"{url}config", timeout=60).json()
    ids = {d.get("api_name"): d["id"] for d in config["dependencies"]}
    stop = next(d for d in config["dependencies"] if d.get("api_name") == "rag_stop")
    cancelled = {i for d in config["dependencies"] if d["types"]["cancel"] and d["targets"] == stop["targets"]
                 for i in d["cancels"]}  # gradio adds the cancelling function beside the click's own
    assert ids["rag_chat"] in cancelled  # one listener for the button and Enter (gr.on)
    job = client.submit("Tell me everything about attention heads, at length.", [], 4, 0.0, False, True, False,
                        True, api_name="/rag_chat")
    deadline = time.monotonic() + 120
    while not running_rows(demo) and not job.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel()
    assert wait_for_no_rows(demo, 20)


def test_indexing_that_passes_the_time_limit_stores_nothing(limited_app, tmp_path):
    from test_rag_app import rows

    url, demo, client = limited_app
    path = tmp_path / "long.txt"
    path.write_text("\n\n".join(f"Paragraph {i}: the harbour's tide tables list high and low water for every day "
                                f"of the year {1900 + i % 100}." for i in range(3000)))
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    start = time.perf_counter()
    with pytest.raises(AppError, match="took longer than this server's time limit"):
        client.predict([handle_file(str(path))], 32, 0, "tokens", api_name="/rag_ingest")
    assert time.perf_counter() - start < 90
    assert rows(client.predict(api_name="/rag_list")[0]) == []


def test_the_decoding_playground_stops_at_the_time_limit(limited_app, lm):
    """Contrastive search with 20 candidates asked for 200 tokens (tens of seconds): /decode returns
    what it has at the limit, and the UI's streamed run says why it stopped."""
    from test_decoding_limits import CONTRASTIVE_20, COUNTING

    _, _, client = limited_app
    start = time.perf_counter()
    text = client.predict(COUNTING, *CONTRASTIVE_20, api_name="/decode")
    assert time.perf_counter() - start < 60
    assert text and len(lm.tokenizer(text)["input_ids"]) < 190
    outputs = client.predict(COUNTING, *CONTRASTIVE_20, api_name="/decoding_generate")
    assert f"Stopped after {LIMIT_S:g} s" in outputs[2]  # the status line


def test_a_stream_is_reported_cut_only_when_it_had_more():
    import itertools

    from models.time_limit import within

    def endless():
        for i in itertools.count():
            time.sleep(0.05)
            yield i

    def last_item_late():
        yield 0
        yield 1
        time.sleep(1.2)  # the final item arrives after the limit: the stream then ends by itself
        yield 2

    cut = []
    items = list(within(endless(), 0.3, on_timeout=lambda: cut.append(True)))
    assert cut == [True] and len(items) >= 2 and items == list(range(len(items)))  # what came is kept
    cut.clear()
    assert list(within(last_item_late(), 1.0, on_timeout=lambda: cut.append(True))) == [0, 1, 2]
    assert cut == []  # it ended just as the limit passed: not reported as stopped

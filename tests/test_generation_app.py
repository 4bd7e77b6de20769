"""The generation service through the app's HTTP API: a session that goes away gives its batch row back.

One student's page streams a long answer and another student's question joins the same batch;
the first page then closes its connection (a closed tab, a lost network) without pressing Stop.
The first answer ends at the next step ("stopped", not its 512 tokens or the time limit), and
the second student's answer finishes with the same text as the same question run alone through
today's one-`generate()` path.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import httpx
import pytest
from conftest import launched_demo, patient_client

from models.chat import message_text, stream_answer
from models.qna.prompt import prepare_question

GENERATIVE = "Generative (SmolLM2 writes the answer)"
COUNT = "Count from 1 to 1000, one number after another, separated by commas."
NEIGHBOUR = "Name three rivers in Europe."
LONG, SHORT = 512, 48


@pytest.fixture(scope="module")
def app(settings, registry, tmp_path_factory):
    # A long job time limit: only the disconnect can end the long answer early.
    own = replace(settings, data_dir=tmp_path_factory.mktemp("generation-app"), job_time_limit_s=600)
    with launched_demo(own, registry) as (url, demo):
        client = patient_client(url)
        client.predict("Say hi.", "", api_name="/qna_answer")  # the model is loaded before the test
        yield url, demo, client


def ask(client, question: str, new_tokens: int):
    return client.submit(question, "", GENERATIVE, [], new_tokens, 0, 0, api_name="/qna_chat")


def final_answer(job) -> str:
    return message_text(job.result(timeout=900)[0][-1]["content"])


def alone(lm, settings, question: str, new_tokens: int) -> str:
    """The greedy answer with no neighbours: generate() on the plain model, the chat handler's prompt."""
    prompt = prepare_question(lm, question, "", [], max_new_tokens=new_tokens,
                              context_tokens=settings.context_tokens).prompt
    return list(stream_answer(lm, prompt, max_new_tokens=new_tokens))[-1]


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_a_page_that_disconnects_frees_its_row_and_its_neighbour_finishes(app, lm, settings):
    url, demo, client = app
    batcher = demo.services.generation.batcher(demo.registry.chat_model().model)
    config = httpx.get(f"{url}config", timeout=60).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "qna_chat")
    body = {"data": [COUNT, "", GENERATIVE, [], LONG, 0, 0], "fn_index": fn_index, "session_hash": "leaves-early",
            "event_data": None, "trigger_id": None}
    assert httpx.post(f"{url}gradio_api/queue/join", json=body, timeout=120).status_code == 200
    page = httpx.Client(timeout=120)
    writing, closed = threading.Event(), threading.Event()

    def read_stream() -> None:  # the page keeps reading its stream until it goes away
        try:
            with page.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": "leaves-early"}) as events:
                for line in events.iter_lines():
                    if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_generating":
                        writing.set()
        except httpx.HTTPError:
            assert closed.is_set()  # only our own close may end it

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    assert writing.wait(300) and wait_for(lambda: batcher.running() == 1, 300)
    leaving = batcher._rows[0].stream  # the long answer's row (read-only look at the batch)
    assert leaving.request.max_new_tokens == LONG
    neighbour = ask(client, NEIGHBOUR, SHORT)
    # Both answers share forward passes (a busy shared machine can take minutes to get here).
    assert wait_for(lambda: batcher.running() == 2, 900), (neighbour.status(), leaving.finish_reason)
    closed.set()
    page.close()  # the tab goes away in the middle of the long answer
    reader.join(60)
    assert wait_for(lambda: leaving.finish_reason is not None, 300)
    assert leaving.finish_reason == "stopped"  # not "length": its 512 tokens were never decoded
    assert final_answer(neighbour) == alone(lm, settings, NEIGHBOUR, SHORT)
    assert wait_for(lambda: batcher.running() == 0, 60)

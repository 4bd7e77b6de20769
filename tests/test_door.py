"""Limits at the door, probed with plain HTTP as an attacker would: oversized uploads and bodies,
file types, the queue's back door, routes the app never uses, and gradio's file cache.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from conftest import launched_app, patient_client
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from test_hostile_input import still_serving


def upload(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}gradio_api/upload", files={"files": (name, data, "text/plain")}, timeout=120)


def test_an_upload_over_the_size_limit_is_refused_before_it_is_stored(app_url, settings):
    response = upload(app_url, "big.txt", b"a" * int(settings.max_upload_mb * 1e6 + 1_500_000))
    assert response.status_code == 413  # a file just over the limit gets its own message in the report instead
    small = upload(app_url, "small.txt", b"fits")
    assert small.status_code == 200 and Path(small.json()[0]).read_bytes() == b"fits"


def test_a_file_type_the_chat_cannot_read_is_refused_at_the_door(app_url, tmp_path):
    path = tmp_path / "tool.exe"
    path.write_text("Plain text in a file named like a program.")
    with pytest.raises(AppError, match="Invalid file type"):
        patient_client(app_url).predict([handle_file(str(path))], 64, 8, "tokens", api_name="/rag_ingest")


def test_event_bodies_are_capped_before_gradio_stores_them(app_url, settings):
    body = {"data": ["x" * (settings.max_request_kb * 1000 + 10), ""], "fn_index": 0, "session_hash": "big-body",
            "event_data": None, "trigger_id": None}
    response = httpx.post(f"{app_url}gradio_api/queue/join", json=body, timeout=60)
    assert response.status_code == 413
    assert still_serving(app_url)


def test_model_jobs_cannot_skip_the_queue_through_the_rest_route(app_url):
    response = httpx.post(f"{app_url}gradio_api/run/qna_answer", json={"data": ["What is 2 + 2?", ""]}, timeout=120)
    assert response.status_code == 404 and "join the queue" in response.text


@pytest.mark.parametrize("route", ["gradio_api/deep_link?session_hash=someone-else", "monitoring",
                                   "gradio_api/vibe-code", "gradio_api/runs", "gradio_api/proxy=http://example.com/"])
def test_routes_the_app_never_uses_are_closed(app_url, route):
    assert httpx.get(f"{app_url}{route}", timeout=30).status_code == 404
    assert httpx.get(f"{app_url}gradio_api/info", timeout=30).status_code == 200  # the API description stays


@pytest.fixture(scope="module")
def cleaning_app(settings, registry, tmp_path_factory):
    with launched_app(replace(settings, data_dir=tmp_path_factory.mktemp("cache-clean"), cache_clean_s=1),
                      registry) as url:
        yield url


def test_uploads_leave_gradios_cache(cleaning_app):
    stored = Path(upload(cleaning_app, "notes.txt", b"The ferry leaves at dawn.").json()[0])
    assert stored.exists()
    deadline = time.monotonic() + 15
    while stored.exists() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not stored.exists()

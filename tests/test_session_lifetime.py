"""A session's documents through its page's life, probed over HTTP as a browser (or an attacker)
would: a Wi-Fi blip, an idle open page, a second heartbeat connection with the same session
hash, and a session that really ended (removed after its grace period).

The app here has a 1 s grace period, a 1 s TTL and a 0.3 s housekeeping round, so "later" is
seconds away; production runs the same code with minutes.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from conftest import launched_demo, patient_client
from gradio_client import Client, handle_file
from test_rag_app import rows

from models.chat import message_text
from models.rag.store import session_collection_name

GRACE_S, HOUSEKEEPING_S = 1.0, 0.3
LATER_S = GRACE_S + 4 * HOUSEKEEPING_S  # past the grace period, with a few sweeps in between


@pytest.fixture(scope="module")
def short_app(settings, registry, tmp_path_factory):
    own = replace(settings, data_dir=tmp_path_factory.mktemp("lifetime"), session_grace_s=GRACE_S,
                  session_ttl_s=1, housekeeping_s=HOUSEKEEPING_S)
    with pytest.MonkeyPatch.context() as env:
        # gradio notices a dropped heartbeat at its next write: every 0.25 s here instead of 15 s
        env.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.25")
        with launched_demo(own, registry) as (url, demo):
            yield url, demo


@pytest.fixture(scope="module")
def note(tmp_path_factory):
    path = tmp_path_factory.mktemp("lifetime-files") / "note.txt"
    path.write_text("The night ferry to Lindholm leaves at 23:40 from pier 9.")
    return str(path)


def session_client(url: str, session: str) -> Client:
    """A gradio_client acting for `session`, without a heartbeat of its own (the test holds it)."""
    client = patient_client(url)
    client.close()  # stops the heartbeat thread of the client's own random session
    client.session_hash = session
    return client


@contextlib.contextmanager
def heartbeat(url: str, session: str):
    """A page's heartbeat connection for `session`, open for the duration of the block, then
    dropped the way a lost network drops it (a raw socket, closed without reading on)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"GET /gradio_api/heartbeat/{session} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        received = b""
        while b"ALIVE" not in received:  # the server answered and holds the connection
            chunk = sock.recv(4096)
            assert chunk, f"heartbeat refused: {received[:200]!r}"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")
        yield


def documents(client: Client) -> list[str]:
    return [r[0] for r in rows(client.predict(api_name="/rag_list")[0])]


def test_a_wifi_blip_keeps_the_sessions_documents(short_app, note):
    url, _ = short_app
    client = session_client(url, "blip-session")
    with heartbeat(url, "blip-session"):
        client.predict([handle_file(note)], 64, 8, "tokens", api_name="/rag_ingest")
    time.sleep(0.3)  # the connection is gone; the page reconnects with the same session
    with heartbeat(url, "blip-session"):
        time.sleep(LATER_S)
        assert documents(client) == ["note.txt"]


def test_an_open_idle_page_is_never_swept(short_app, note):
    url, _ = short_app
    client = session_client(url, "idle-session")
    with heartbeat(url, "idle-session"):
        client.predict([handle_file(note)], 64, 8, "tokens", api_name="/rag_ingest")
        time.sleep(LATER_S + 1)  # no request for longer than the TTL and the grace period
        assert documents(client) == ["note.txt"]


def test_a_session_that_ended_is_removed_after_its_grace_period(short_app, note):
    url, demo = short_app
    client = session_client(url, "ended-session")
    with heartbeat(url, "ended-session"):
        client.predict([handle_file(note)], 64, 8, "tokens", api_name="/rag_ingest")
    time.sleep(0.3)
    assert demo.services.store.documents("ended-session")  # within the grace period: still there
    time.sleep(LATER_S)
    assert demo.services.store.documents("ended-session") == []
    names = [c.name for c in demo.services.store.client.list_collections()]
    assert session_collection_name("ended-session") not in names


def test_a_second_heartbeat_connection_cannot_end_the_session(short_app, note):
    """Anyone holding the session hash can open its heartbeat route; leaving it must neither
    stop the owner's running answer nor delete the owner's documents."""
    url, _ = short_app
    owner = session_client(url, "owned-session")
    with heartbeat(url, "owned-session"):
        owner.predict([handle_file(note)], 64, 8, "tokens", api_name="/rag_ingest")
        job = owner.submit("Tell me a long story about a lighthouse.", "", "Generative (SmolLM2 writes the answer)",
                           [], 32, 0, 0, api_name="/qna_chat")
        deadline = time.monotonic() + 120
        while not job.outputs() and not job.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.outputs(), "the answer never started"
        with heartbeat(url, "owned-session"):
            pass  # a second connection opens and leaves
        history = job.result(timeout=120)[0]
        assert history[-1]["role"] == "assistant" and len(message_text(history[-1]["content"])) > 30
        time.sleep(LATER_S)
        assert documents(owner) == ["note.txt"]


def test_activity_rules_with_a_fake_clock():
    from models.sessions import SessionActivity

    now = [1000.0]
    activity = SessionActivity(clock=lambda: now[0], max_tracked=3)
    activity.opened("page")
    now[0] += 10_000
    assert not activity.expired("page", 0.0, now[0], ttl_s=60, grace_s=5)  # open: never
    activity.closed("page")
    assert not activity.expired("page", 0.0, now[0] + 4, ttl_s=60, grace_s=5)
    assert activity.expired("page", 0.0, now[0] + 6, ttl_s=60, grace_s=5)  # grace after its heartbeat
    activity.seen("script")  # never held a heartbeat: the TTL applies
    assert not activity.expired("script", 0.0, now[0] + 30, ttl_s=60, grace_s=5)
    assert activity.expired("script", 0.0, now[0] + 61, ttl_s=60, grace_s=5)
    assert not activity.expired("elsewhere", now[0], now[0] + 30, ttl_s=60, grace_s=5)  # another replica's
    for minted in ("a", "b", "c", "d"):
        activity.seen(minted)
    assert len(activity.known()) == 3 and "a" not in activity.known()  # minting hashes is bounded

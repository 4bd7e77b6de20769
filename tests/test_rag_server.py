"""Document chat against a real Chroma server (`chroma run` on 127.0.0.1), the path taken when
CHROMA_HOST/CHROMA_PORT are set: same isolation, duplicates, delete and expiry as embedded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import free_port

from models.rag.chunking import make_splitter
from models.rag.ingest import ingest
from models.rag.store import DocumentStore, session_collection_name

CHROMA = Path(sys.executable).parent / "chroma"
FACT = "The lighthouse keeper's parrot is named Admiral Pickles."


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    if not CHROMA.exists():
        pytest.fail(f"The chroma CLI is missing at {CHROMA} (it comes with the chromadb package)")
    port = free_port()
    log = tmp_path_factory.mktemp("chroma_log") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(CHROMA), "run", "--path", str(tmp_path_factory.mktemp("chroma_srv")),
                                 "--host", "127.0.0.1", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"chroma run did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server_store(chroma_server, settings, registry):
    server_settings = replace(settings, chroma_host="127.0.0.1", chroma_port=chroma_server)
    return DocumentStore(server_settings, registry.sentence_encoder)


def test_server_path_is_an_http_client(server_store, chroma_server):
    chroma_settings = server_store.client.get_settings()
    assert chroma_settings.chroma_api_impl.endswith("FastAPI")  # the HTTP client, not the embedded one
    assert int(chroma_settings.chroma_server_http_port) == chroma_server
    assert chroma_settings.anonymized_telemetry is False
    assert server_store.client.heartbeat() > 0


def test_sessions_on_the_server_are_private(server_store, registry):
    splitter = make_splitter(64, 8, "tokens", registry.sentence_encoder().tokenizer)
    report = ingest(server_store, "srv-a", [("parrot.txt", FACT.encode())], splitter)
    assert report.files[0].status == "added"
    assert ingest(server_store, "srv-a", [("again.txt", FACT.encode())], splitter).files[0].status == "duplicate"
    ingest(server_store, "srv-b", [("other.txt", b"Temperature flattens the distribution.")], splitter)

    assert server_store.search("srv-a", "What is the parrot called?", 1)[0].text == FACT
    assert all(FACT not in h.text for h in server_store.search("srv-b", "What is the parrot called?", 5))
    doc_id = server_store.documents("srv-a")[0].doc_id
    assert server_store.delete_document("srv-b", doc_id) == 0
    assert server_store.delete_document("srv-a", doc_id) == 1 and server_store.documents("srv-a") == []

    names = [c.name for c in server_store.client.list_collections()]
    assert session_collection_name("srv-b") in names
    removed = server_store.sweep(now=time.time() + server_store.settings.session_ttl_s + 120)
    assert session_collection_name("srv-b") in removed

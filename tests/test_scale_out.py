"""Scale-out for a class: two app processes share one Chroma server, sessions stay private.

Both replicas run `app.py` as separate processes with CHROMA_HOST/CHROMA_PORT pointing at a
real `chroma run` server on 127.0.0.1 (started by the fixture in test_rag_server.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port
from test_rag_server import chroma_server  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
FACT = "The observatory's telescope is nicknamed Big Marigold."
QUESTION = "What is the observatory's telescope nicknamed?"


def start_replica(chroma_port: int, data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(chroma_port),
           "GRADIO_SERVER_PORT": str(port), "GENAI_LAB_WARMUP": "0", "HF_HUB_OFFLINE": "1",
           "GENAI_LAB_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/"


def wait_up(proc: subprocess.Popen, url: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"replica exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"replica at {url} did not start")


@pytest.fixture(scope="module")
def replicas(chroma_server, tmp_path_factory):  # noqa: F811
    started = [start_replica(chroma_server, tmp_path_factory.mktemp(f"replica{i}")) for i in range(2)]
    try:
        for proc, url in started:
            wait_up(proc, url)
        yield [url for _, url in started]
    finally:
        for proc, _ in started:
            proc.terminate()
        for proc, _ in started:
            proc.wait(timeout=60)


def test_two_replicas_share_one_chroma_server_with_private_sessions(replicas, chroma_server, tmp_path):  # noqa: F811
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from gradio_client import Client, handle_file

    from models.rag.store import SESSION_PREFIX

    first, second = replicas
    notes = tmp_path / "observatory.txt"
    notes.write_text(FACT)
    owner = Client(first, verbose=False)
    owner.predict([handle_file(str(notes))], 128, 16, "tokens", api_name="/rag_ingest")

    owner_answer = owner.predict(QUESTION, 4, 0.3, False, False, api_name="/rag_ask")
    assert any(FACT in hit["text"] for hit in owner_answer["retrieved"])
    server = chromadb.HttpClient(host="127.0.0.1", port=chroma_server,
                                 settings=ChromaSettings(anonymized_telemetry=False))
    stored = [c for c in server.list_collections() if c.name.startswith(SESSION_PREFIX) and c.count() > 0]
    assert stored, "the replica did not write its session to the shared Chroma server"

    stranger = Client(second, verbose=False)  # another student, served by the other replica
    stranger_answer = stranger.predict(QUESTION, 4, 0.3, False, False, api_name="/rag_ask")
    assert all(FACT not in hit["text"] for hit in stranger_answer["retrieved"])
    assert not stranger_answer["grounded"]

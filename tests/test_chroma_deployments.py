"""A Chroma server shared by deployments: each sweeps only its own sessions, a server that stops
answering cannot hold a request, and the token reaches the server."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from dataclasses import replace

import pytest
from test_rag_server import chroma_server  # noqa: F401  (the real `chroma run` server fixture)

from models.rag.chunking import make_splitter
from models.rag.ingest import ingest
from models.rag.store import DocumentStore, StoreUnavailable

NOTE = [("note.txt", b"The ferry to the lighthouse leaves at dawn.")]


def test_deployments_sharing_a_server_never_sweep_each_others_sessions(chroma_server, settings, registry):  # noqa: F811
    def store(deployment: str) -> DocumentStore:
        own = replace(settings, chroma_host="127.0.0.1", chroma_port=chroma_server, deployment=deployment)
        return DocumentStore(own, registry.sentence_encoder)

    splitter = make_splitter(64, 8, "tokens", registry.sentence_encoder().tokenizer)
    alpha, beta, plain = store("alpha"), store("beta"), store("")
    for deployment_store in (alpha, beta, plain):
        ingest(deployment_store, "same-session-hash", NOTE, splitter)
    later = time.time() + settings.session_ttl_s + 120
    assert alpha.sweep(now=later) == [alpha.name_of("same-session-hash")]
    assert beta.documents("same-session-hash") and plain.documents("same-session-hash")
    assert plain.sweep(now=later) == [plain.name_of("same-session-hash")]  # the unnamed one: only its own
    assert beta.documents("same-session-hash")
    assert len({alpha.name_of("x"), beta.name_of("x"), plain.name_of("x")}) == 3


def test_a_server_that_stops_answering_cannot_hold_a_request(settings, registry):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    own = replace(settings, chroma_host="127.0.0.1", chroma_port=silent.getsockname()[1], chroma_timeout_s=1.0)
    outcome: list = []

    def ask():
        try:
            outcome.append(DocumentStore(own, registry.sentence_encoder).documents("anyone"))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    start = time.perf_counter()
    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout=20)
    silent.close()
    assert outcome, "the store call was still waiting on the silent server after 20 s"
    assert isinstance(outcome[0], StoreUnavailable) and "did not answer within 1 s" in str(outcome[0])
    assert time.perf_counter() - start < 10


def test_the_chroma_token_is_sent_to_the_server(settings, registry):
    seen: list[dict] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            seen.append(dict(self.headers))
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    own = replace(settings, chroma_host="127.0.0.1", chroma_port=server.server_address[1], chroma_timeout_s=5.0,
                  chroma_token="class-secret")
    try:
        with pytest.raises(Exception):  # noqa: B017 - the recorder is no Chroma server; only the header matters
            DocumentStore(own, registry.sentence_encoder).documents("anyone")
    finally:
        server.shutdown()
    assert seen and all(headers.get("Authorization") == "Bearer class-secret" for headers in seen)
    assert "class-secret" not in repr(own)  # the secret never reaches a log line through the settings

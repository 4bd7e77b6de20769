"""Faults a live class can hit: an interrupted ingestion (simulated, and a real SIGKILL),
the data dir deleted mid-run.

(A corrupt or half-written model cache and a missing model package are in test_registry.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from models.rag.chunking import make_splitter, split_document
from models.rag.documents import load_document
from models.rag.ingest import ingest
from models.rag.store import DocumentStore

LONG_TEXT = " ".join(f"Sentence number {i} talks about rivers, mountains and the sea." for i in range(60)).encode()


@pytest.fixture
def own_settings(settings, tmp_path):
    return replace(settings, data_dir=tmp_path / "data")


@pytest.fixture(scope="module")
def splitter(registry):
    return make_splitter(64, 8, "tokens", registry.sentence_encoder().tokenizer)


def test_interrupted_ingestion_is_not_listed_and_can_be_redone(own_settings, registry, splitter):
    store = DocumentStore(own_settings, registry.sentence_encoder)
    doc = load_document("long.txt", LONG_TEXT)
    chunks = split_document(doc, splitter)
    assert len(chunks) >= 4
    embeddings = store.embed([c.text for c in chunks])
    # What a process killed between two write batches leaves behind: the first batch only.
    store._add(store.collection_for("class-1"), chunks[:2], embeddings[:2],
               {"kind": "text", "bytes": len(LONG_TEXT), "doc_chunks": len(chunks)})
    restarted = DocumentStore(own_settings, registry.sentence_encoder)  # the app after a restart
    assert restarted.documents("class-1") == []
    report = ingest(restarted, "class-1", [("long.txt", LONG_TEXT)], splitter)
    assert report.files[0].status == "added"  # not mistaken for a duplicate
    [listed] = restarted.documents("class-1")
    assert listed.chunks == len(chunks)


def test_data_dir_deleted_while_running_is_recreated(own_settings, registry, splitter):
    store = DocumentStore(own_settings, registry.sentence_encoder)
    ingest(store, "class-2", [("a.txt", b"The lighthouse keeper climbs 120 steps every evening.")], splitter)
    shutil.rmtree(own_settings.data_dir)
    report = ingest(store, "class-2", [("b.txt", b"Beam search keeps several candidate sequences.")], splitter)
    assert report.files[0].status == "added"
    assert own_settings.data_dir.exists()
    hits = store.search("class-2", "How many candidate sequences does beam search keep?", k=1,
                        include_sample=False)
    assert hits and "Beam search" in hits[0].text


# A child process that indexes one short document fully, then a long one in batches of 4 chunks
# and stops after the first batch (a pause the parent fills with SIGKILL: the kill is real).
KILLED_CHILD = """
import sys, time
from config import Settings
from models.rag.chunking import make_splitter, split_document
from models.rag.documents import load_document
from models.rag.ingest import ingest
from models.registry import ModelRegistry
from models.rag.store import DocumentStore

settings = Settings.from_env()
registry = ModelRegistry(settings)
store = DocumentStore(settings, registry.sentence_encoder)
splitter = make_splitter(64, 8, "tokens", registry.sentence_encoder().tokenizer)
ingest(store, "class-3", [("short.txt", b"The keeper lights the lamp at dusk.")], splitter)
doc = load_document("long.txt", sys.stdin.buffer.read())
chunks = split_document(doc, splitter)
collection = store.collection_for("class-3")
real_upsert = collection.upsert

def upsert_then_pause(**batch):
    real_upsert(**batch)
    print("stored", len(batch["ids"]), "of", len(chunks), flush=True)
    time.sleep(600)

collection.upsert = upsert_then_pause
store.add("class-3", chunks, store.embed([c.text for c in chunks]), doc.kind, doc.n_bytes, batch=4)
"""


def test_ingestion_killed_mid_document_lists_only_complete_documents_after_restart(own_settings, registry,
                                                                                  splitter):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "GENAI_LAB_DATA_DIR": str(own_settings.data_dir),
           "GENAI_LAB_CACHE_DIR": str(own_settings.cache_dir), "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD], cwd=root, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        child.stdin.write(LONG_TEXT.decode())
        child.stdin.close()
        line = child.stdout.readline()  # blocks until the first batch of the long document is stored
        assert line.startswith("stored 4 of"), f"child ended early: {line!r}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    restarted = DocumentStore(own_settings, registry.sentence_encoder)  # the app after a restart
    assert [d.source for d in restarted.documents("class-3")] == ["short.txt"]
    stored = restarted.collection_for("class-3").get(where={"source": "long.txt"}, include=[])["ids"]
    assert len(stored) == 4  # the partial document is on disk, yet not listed as indexed
    report = ingest(restarted, "class-3", [("long.txt", LONG_TEXT)], splitter)
    assert report.files[0].status == "added"
    assert sorted(d.source for d in restarted.documents("class-3")) == ["long.txt", "short.txt"]

"""Faults a live class can hit: an interrupted ingestion, the data dir deleted mid-run.

(A corrupt or half-written model cache and a missing model package are in test_registry.py.)
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from models.chunking import make_splitter, split_document
from models.documents import load_document
from models.rag_ingest import ingest
from models.vector_store import DocumentStore

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

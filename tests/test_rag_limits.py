"""The document chat's limits hold against a hostile class: concurrent uploads into one session,
fresh sessions minted to fill the server, and documents whose ingestion was cut short.

Attacks that come from outside go through the running app's HTTP API (gradio_client).
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from conftest import launched_app, patient_client
from gradio_client import Client, handle_file
from test_rag_app import rows

from models.rag.budget import Budgets, LimitError, Usage
from models.rag.chunking import make_splitter, split_document
from models.rag.documents import load_document
from models.rag.ingest import ingest
from models.rag.store import DocumentStore

FACT = b"The purple giraffe of Zanzibar guards the vault code 7731."


def write_notes(folder, prefix: str, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = folder / f"{prefix}-{i}.txt"
        path.write_text(f"Note {prefix} {i}: the lighthouse on island {i} is painted {prefix} and white.")
        paths.append(str(path))
    return paths


def test_two_uploads_at_once_cannot_pass_the_file_limit_together(app_url, settings, tmp_path):
    """Each upload alone fits (12 files, limit 20); together they used to end with 24 documents."""
    client = patient_client(app_url)
    batches = [write_notes(tmp_path, name, 12) for name in ("red", "blue")]
    jobs = [client.submit([handle_file(p) for p in batch], 64, 8, "tokens", api_name="/rag_ingest")
            for batch in batches]
    reports = [rows(job.result(timeout=300)[0]) for job in jobs]
    docs = rows(client.predict(api_name="/rag_list")[0])
    assert len(docs) == settings.max_files_per_session
    refused = [r for report in reports for r in report if r[1] == "error"]
    assert len(refused) == 24 - settings.max_files_per_session
    assert all(f"limit is {settings.max_files_per_session}" in r[5] for r in refused)


@pytest.fixture(scope="module")
def tight_app(settings, registry, tmp_path_factory):
    """Room for 6 chunks across all sessions, and 3 new document sessions per address per hour."""
    own = replace(settings, data_dir=tmp_path_factory.mktemp("tight"), total_chunks=6, address_sessions_per_hour=3)
    with launched_app(own, registry) as url:
        yield url


def test_minted_sessions_meet_the_address_quota_and_the_class_budget(tight_app, tmp_path):
    def upload(client: Client, name: str, sentences: int):
        path = tmp_path / f"{name}.txt"
        path.write_text("\n\n".join(f"{name} sentence {i} is about tide pools and harbour seals."
                                    for i in range(sentences)))
        report = rows(client.predict([handle_file(str(path))], 32, 0, "tokens", api_name="/rag_ingest")[0])
        return report[0]

    minted = [patient_client(tight_app) for _ in range(4)]
    firsts = [upload(client, f"s{i}", 1) for i, client in enumerate(minted[:3])]
    assert all(row[1] == "added" for row in firsts), firsts
    used = sum(row[4] for row in firsts)
    fourth = upload(minted[3], "s3", 1)  # a fourth fresh session from the same address this hour
    assert fourth[1] == "error" and "started from your network" in fourth[5]
    more = upload(minted[0], "s0-more", 12)  # an existing session, but the class's space is nearly full
    assert used < 6 and more[1] == "error" and "document space is full" in more[5]


def test_the_budget_counts_what_other_uploads_admitted_but_have_not_stored():
    settings = type("S", (), {"max_files_per_session": 20, "max_upload_mb": 20.0, "max_chunks_per_session": 5000,
                              "total_chunks": 100, "total_upload_mb": 100.0, "address_sessions_per_hour": 2})()
    budgets = Budgets(settings, clock=lambda: 0.0)
    stored = Usage(1, 10, 50)
    with budgets.ticket(Usage(), lambda: stored, "10.0.0.1") as first, \
            budgets.ticket(Usage(), lambda: stored, "10.0.0.1") as second:
        first.take(Usage(1, 10, 40))
        with pytest.raises(LimitError, match="document space is full"):
            second.take(Usage(1, 10, 20))  # 50 stored + 40 admitted elsewhere + 20 > 100
        second.take(Usage(1, 10, 10))
        with budgets.ticket(Usage(), lambda: stored, "10.0.0.1") as third, \
                pytest.raises(LimitError, match="limit is 2"):
            third.take(Usage(1, 1, 0))
    assert budgets.pending() == Usage()  # released when the uploads end


@pytest.fixture
def store(settings, registry, tmp_path):
    return DocumentStore(replace(settings, data_dir=tmp_path / "data"), registry.sentence_encoder)


@pytest.fixture(scope="module")
def splitter(registry):
    return make_splitter(16, 0, "tokens", registry.sentence_encoder().tokenizer)


def test_a_half_indexed_document_is_listed_as_incomplete_never_searched_and_deletable(store, splitter):
    ingest(store, "half", [("fact.txt", FACT)], splitter)
    text = " ".join(f"Sentence {i} says the vault code of the purple giraffe is 7731." for i in range(12)).encode()
    doc = load_document("long.txt", text)
    chunks = split_document(doc, splitter)
    # What a process killed between two write batches leaves behind: the first batch only.
    store._add(store.collection_for("half"), chunks[:2], store.embed([c.text for c in chunks[:2]]),
               {"kind": "text", "bytes": len(text), "doc_chunks": len(chunks)})
    listed = {d.source: d.complete for d in store.all_documents("half")}
    assert listed == {"fact.txt": True, "long.txt": False}
    hits = store.search("half", "What is the vault code of the purple giraffe?", 8, include_sample=False)
    assert {h.source for h in hits} == {"fact.txt"}  # only what is listed as complete is searched
    assert store.delete_document("half", doc.sha256) == 2
    assert [d.source for d in store.all_documents("half")] == ["fact.txt"]


def test_the_remembered_chunk_listing_follows_writes_here_and_from_another_process(store, splitter, registry):
    """A search remembers the session's chunk listing (listing 5,000 chunks costs ~190 ms); a
    write by this store forgets it, and one by another app process on the same store changes the
    chunk count, which the next search checks."""
    question = "What is the vault code of the purple giraffe?"

    def sources(hybrid: bool = False) -> set[str]:
        return {h.source for h in store.search("shared", question, 8, include_sample=False, hybrid=hybrid)}

    ingest(store, "shared", [("fact.txt", FACT)], splitter)
    assert sources() == sources(hybrid=True) == {"fact.txt"}
    other = DocumentStore(store.settings, registry.sentence_encoder)  # a second app process, same store
    ingest(other, "shared", [("keeper.txt", b"The keeper says the giraffe's vault code is 7731.")], splitter)
    assert sources() == sources(hybrid=True) == {"fact.txt", "keeper.txt"}
    fact = next(d for d in store.documents("shared") if d.source == "fact.txt")
    assert store.delete_document("shared", fact.doc_id) == 1
    assert sources() == sources(hybrid=True) == {"keeper.txt"}


def test_a_file_the_store_fails_to_write_gets_its_own_message_and_leaves_nothing(store, splitter):
    real_add = store._add

    def add_then_fail(collection, chunks, embeddings, extra, batch=1000):
        if chunks[0].source == "broken.txt":
            real_add(collection, chunks[:1], embeddings[:1], extra, batch)
            raise OSError("disk full")
        return real_add(collection, chunks, embeddings, extra, batch)

    store._add = add_then_fail
    long = " ".join(f"Line {i} about harbour seals." for i in range(20)).encode()
    report = ingest(store, "failing", [("broken.txt", long), ("fact.txt", FACT)], splitter)
    by_name = {f.name: f for f in report.files}
    assert by_name["fact.txt"].status == "added"
    assert by_name["broken.txt"].status == "error" and "could not be stored" in by_name["broken.txt"].message
    assert [d.source for d in store.all_documents("failing")] == ["fact.txt"]


def test_a_reset_waits_for_the_sessions_running_upload(store, splitter):
    import threading

    with store.writing("busy"):
        ingest(store, "busy", [("fact.txt", FACT)], splitter)  # re-entrant: the upload holds the lock
        done = threading.Event()
        threading.Thread(target=lambda: (store.drop_session("busy"), done.set()), daemon=True).start()
        time.sleep(0.3)
        assert not done.is_set()  # the reset waits for the upload to finish
    assert done.wait(10) and store.all_documents("busy") == []

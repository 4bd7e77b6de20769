"""Document chat through the running app with gradio_client: two sessions stay private,
bad files are reported one by one, duplicates are skipped, delete works, answers are cited
and chunk text reaching the page is escaped."""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from models.rag.chain import NO_ANSWER
from models.rag.documents import text_pdf

FACT = "The purple giraffe of Zanzibar guards the vault code 7731."
HOSTILE = "Giraffes in Zanzibar love <b>bold</b> acacia leaves <script>alert('x')</script> at dawn."


def rows(table) -> list[list]:
    """Rows of a Dataframe output, whatever wrapper the client returns it in."""
    return table["data"] if isinstance(table, dict) else table


@pytest.fixture(scope="module")
def files(tmp_path_factory, settings):
    folder = tmp_path_factory.mktemp("rag_files")
    paths = {
        "fact.txt": f"Zoo notes.\n\n{FACT}\n\n{HOSTILE}\n".encode(),
        "guide.pdf": text_pdf(["Beam search keeps several partial sequences.", "Greedy picks the top token."]),
        "empty.txt": b"",
        "broken.pdf": text_pdf(["Some text"])[:80],
        "picture.md": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
        "huge.txt": b"a" * int(settings.max_upload_mb * 1e6 + 10),
        "b_notes.md": b"# Session B\n\nQuantization stores weights in int8 to save memory.",
    }
    for name, data in paths.items():
        (folder / name).write_bytes(data)
    return {name: str(folder / name) for name in paths}


@pytest.fixture(scope="module")
def alice(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def bob(app_url):
    return Client(app_url, verbose=False)


def ingest(client, paths, size=64, overlap=8, unit="tokens"):
    return client.predict([handle_file(p) for p in paths], size, overlap, unit, api_name="/rag_ingest")


def test_bad_files_are_reported_and_the_good_ones_go_in(alice, files):
    names = ["fact.txt", "guide.pdf", "empty.txt", "broken.pdf", "picture.md", "huge.txt"]
    report, status, docs, _ = ingest(alice, [files[n] for n in names])
    by_file = {r[0]: r for r in rows(report)}
    assert by_file["fact.txt"][1] == "added" and by_file["guide.pdf"][1] == "added"
    assert by_file["guide.pdf"][2:4] == ["pdf", 2]
    assert "empty" in by_file["empty.txt"][5]
    assert "corrupt" in by_file["broken.pdf"][5]
    assert "unsupported file type" in by_file["picture.md"][5]
    assert "limit" in by_file["huge.txt"][5]
    assert "2 of 6 file(s) indexed" in status
    assert sorted(r[0] for r in rows(docs)) == ["fact.txt", "guide.pdf"]

    report, status, docs, _ = ingest(alice, [files["fact.txt"]])
    assert rows(report)[0][1] == "duplicate" and "0 of 1" in status
    assert len(rows(docs)) == 2


def test_sessions_never_see_each_other(alice, bob, files):
    ingest(bob, [files["b_notes.md"]])
    docs, _ = bob.predict(api_name="/rag_list")
    assert [r[0] for r in rows(docs)] == ["b_notes.md"]
    result = bob.predict("What code does the purple giraffe of Zanzibar guard?", 5, 0.3, False, False,
                         api_name="/rag_ask")
    assert all("giraffe" not in hit["text"] for hit in result["retrieved"])
    assert result["answer"] == NO_ANSWER and not result["grounded"]
    # Bob cannot delete Alice's document even with its id.
    alice_docs, _ = alice.predict(api_name="/rag_list")
    fact_id_prefix = next(r[5] for r in rows(alice_docs) if r[0] == "fact.txt")
    _, choices_update = alice.predict(api_name="/rag_list")
    fact_id = next(v for _, v in choices_update["choices"] if v.startswith(fact_id_prefix))
    with pytest.raises(AppError):  # not one of Bob's documents: refused before the handler runs
        bob.predict(fact_id, api_name="/rag_delete")
    assert "fact.txt" in [r[0] for r in rows(alice.predict(api_name="/rag_list")[0])]


def test_cited_answer_with_escaped_sources(alice):
    result = alice.predict("What code does the purple giraffe of Zanzibar guard?", 3, 0.3, False, False,
                           api_name="/rag_ask")
    assert result["grounded"]
    assert any(FACT in s["text"] for s in result["sources"])
    assert "[1]" in result["answer"] or "[2]" in result["answer"] or "[3]" in result["answer"]
    assert "7731" in result["answer"]

    # Every input of the page's listener (off the API page, so gradio_client fills in no defaults).
    job = alice.submit("Which leaves do giraffes in Zanzibar love?", [], 2, 0.3, False, False, False, True,
                       api_name="/rag_chat")
    job.result()  # wait for the stream to end; outputs() then holds every update
    outputs = job.outputs()
    panels = [o[4] for o in outputs if isinstance(o[4], str) and "rag-sources" in o[4]]
    assert panels, "the sources panel was never filled"
    assert "<script>" not in panels[-1] and "&lt;script&gt;" in panels[-1]
    assert "&lt;b&gt;bold&lt;/b&gt;" in panels[-1]


def test_delete_and_reset(alice):
    docs, choices = alice.predict(api_name="/rag_list")
    guide = next(v for label, v in choices["choices"] if label.startswith("guide.pdf"))
    docs, _, note = alice.predict(guide, api_name="/rag_delete")
    assert note.startswith("Deleted") and [r[0] for r in rows(docs)] == ["fact.txt"]
    alice.predict(api_name="/rag_reset")
    assert rows(alice.predict(api_name="/rag_list")[0]) == []


def test_chunk_preview_and_retrieval_evaluation(alice, files):
    table, segments = alice.predict([handle_file(files[n]) for n in ("guide.pdf", "empty.txt", "huge.txt")],
                                    32, 8, "characters", api_name="/rag_preview")
    by_file = {r[0]: r for r in rows(table)}
    assert by_file["guide.pdf"][1] >= 2 and by_file["guide.pdf"][3] <= 32
    assert "empty" in by_file["empty.txt"][4]
    assert "limit" in by_file["huge.txt"][4]  # the size guard of ingestion applies to the preview too
    labels = {s["class_or_confidence"] if isinstance(s, dict) else s[1]
              for s in (segments["value"] if isinstance(segments, dict) and "value" in segments else segments)}
    assert {"chunk A", "chunk B"} <= labels

    summary, table = alice.predict(128, 16, "tokens", 4, api_name="/rag_eval")
    assert "hit@4 = 1.00" in summary and "MRR@4" in summary
    assert len(rows(table)) >= 20

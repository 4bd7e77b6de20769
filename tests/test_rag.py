"""Document chat, model side: validation by content, chunking, the per-session store,
the threshold, citations (escaped) and retrieval quality on the bundled questions."""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest

from models.rag import chain as rag_chain
from models.rag.chunking import boundary_preview, make_splitter, size_stats, split_document
from models.rag.citations import cite
from models.rag.documents import DocumentError, load_document, load_folder, sniff_kind, text_pdf
from models.rag.evaluation import CORPUS_DIR, evaluate, load_questions
from models.rag.hits import Hit
from models.rag.ingest import ingest
from models.rag.store import DocumentStore, LimitError, session_collection_name
from tabs.rag_views import sources_html

FACT = "The purple giraffe of Zanzibar guards the vault code 7731."


@pytest.fixture(scope="module")
def encoder(registry):
    return registry.sentence_encoder()


@pytest.fixture(scope="module")
def own_settings(settings, tmp_path_factory):
    """A data dir of this module's own, so sweeping here never touches the live app's sessions."""
    from dataclasses import replace

    return replace(settings, data_dir=tmp_path_factory.mktemp("rag_store"))


@pytest.fixture
def store(own_settings, registry):
    return DocumentStore(own_settings, registry.sentence_encoder)


@pytest.fixture
def tokens(encoder):
    return make_splitter(64, 8, "tokens", encoder.tokenizer)


def docx_bytes(paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    for p in paragraphs:
        document.add_paragraph(p)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def image_only_pdf() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        fig = plt.figure(figsize=(3, 3))
        ax = fig.add_axes([0, 0, 1, 1])
        ax.imshow(np.arange(100).reshape(10, 10))
        ax.axis("off")
        pdf.savefig(fig)
        plt.close(fig)
    return buf.getvalue()


# ---- documents ----------------------------------------------------------------------------------
def test_kinds_are_judged_by_content_not_by_name():
    assert sniff_kind("notes.txt", text_pdf(["hello"])) == "pdf"
    assert sniff_kind("report.pdf", docx_bytes(["hi"])) == "docx"
    assert sniff_kind("page.txt", b"<!DOCTYPE html><html><body><p>x</p></body></html>") == "html"
    assert sniff_kind("a.md", b"# Title\n\ntext") == "markdown"
    assert sniff_kind("a.bin", "plain words, café".encode()) == "text"


def test_each_format_parses_to_text():
    pdf = load_document("a.pdf", text_pdf(["First page about attention.", "Second page about decoding."]))
    assert [p.number for p in pdf.pages] == [1, 2] and "decoding" in pdf.pages[1].text
    doc = load_document("a.docx", docx_bytes(["Paragraph one.", FACT]))
    assert doc.kind == "docx" and FACT in doc.text
    html = load_document("a.html", b"<html><head><script>var secret=1;</script><style>p{}</style></head>"
                                   b"<body><h1>Title</h1><p>Body &amp; text.</p></body></html>")
    assert "Body & text." in html.text and "secret" not in html.text and "p{}" not in html.text
    assert load_document("a.txt", FACT.encode()).sha256 == load_document("b.md", FACT.encode()).sha256


@pytest.mark.parametrize("name,data,message", [
    ("empty.txt", b"", "empty"),
    ("blank.md", b"   \n\n  ", "no text"),
    ("broken.pdf", text_pdf(["some text here"])[:70], "corrupt"),
    ("broken.docx", b"PK\x03\x04" + b"\x00" * 50, "corrupt"),
    ("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "unsupported file type"),
    ("archive.docx", None, "not a Word"),
])
def test_bad_files_get_their_own_clear_message(name, data, message):
    if data is None:  # a real zip that is not a DOCX
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("readme.txt", "hello")
        data = buf.getvalue()
    with pytest.raises(DocumentError, match=message) as info:
        load_document(name, data)
    assert str(info.value).startswith(name)


def test_image_only_and_oversized_files_are_refused():
    with pytest.raises(DocumentError, match="no text layer"):
        load_document("scan.pdf", image_only_pdf())
    with pytest.raises(DocumentError, match="over the 0.0 MB limit"):
        load_document("big.txt", b"x" * 5000, max_bytes=1000)


# ---- chunking ----------------------------------------------------------------------------------------
def test_token_chunks_respect_the_size_and_keep_pages(encoder, tokens):
    doc = load_document("a.pdf", text_pdf([" ".join(["Attention weights sum to one."] * 40), "Short page two."]))
    chunks = split_document(doc, tokens)
    stats = size_stats(chunks, encoder.tokenizer)
    assert stats["chunks"] > 3 and stats["max"] <= 64 and stats["mean"] >= 40  # full chunks, not crumbs
    assert {c.page for c in chunks} == {1, 2}
    assert len({c.id for c in chunks}) == len(chunks)
    segments = boundary_preview(doc, chunks)
    labels = {label for _, label in segments}
    assert {"chunk A", "chunk B"} <= labels
    assert "".join(text for text, _ in segments).startswith(doc.pages[0].text[:100])


def test_character_chunking_and_bad_settings():
    doc = load_document("a.txt", " ".join(f"w{i}" for i in range(400)).encode())
    chunks = split_document(doc, make_splitter(100, 20, "characters"))
    assert max(len(c.text) for c in chunks) <= 100
    assert all(doc.text[c.start:c.start + len(c.text)] == c.text for c in chunks)
    segments = boundary_preview(doc, chunks, max_chunks=3)
    shown = "".join(text for text, _ in segments)
    assert shown.startswith(doc.text[:chunks[2].start + len(chunks[2].text)])
    overlaps = [text for text, label in segments if label == "overlap"]
    assert len(overlaps) == 2 and all(0 < len(o) <= 20 for o in overlaps)
    with pytest.raises(ValueError, match="overlap"):
        make_splitter(50, 50, "characters")


# ---- store -------------------------------------------------------------------------------------------
def test_collection_names_are_valid_and_private():
    name = session_collection_name("abc123")
    assert re.fullmatch(r"[a-zA-Z0-9._-]{3,512}", name) and "abc123" not in name
    assert name != session_collection_name("abc124")


def test_sessions_are_isolated_and_duplicates_skipped(store, tokens):
    files = [("fact.txt", FACT.encode()), ("other.md", b"# Notes\n\nBeam search keeps several beams.")]
    first = ingest(store, "session-a", files, tokens)
    assert [f.status for f in first.files] == ["added", "added"] and first.chunks_added >= 2
    again = ingest(store, "session-a", [("copy.txt", FACT.encode())], tokens)
    assert again.files[0].status == "duplicate"
    assert [h.text for h in store.search("session-a", "vault code of the giraffe", 1)] == [FACT]
    assert all(FACT not in h.text for h in store.search("session-b", "vault code of the giraffe", 5))
    assert store.documents("session-b") == []
    doc_id = next(d.doc_id for d in store.documents("session-a") if d.source == "fact.txt")
    assert store.delete_document("session-b", doc_id) == 0  # cannot touch another session's chunks
    assert store.delete_document("session-a", doc_id) == 1
    assert [d.source for d in store.documents("session-a")] == ["other.md"]


def test_limits_are_enforced_per_session(own_settings, registry, tokens):
    from dataclasses import replace

    small = DocumentStore(replace(own_settings, max_files_per_session=1, max_chunks_per_session=3),
                          registry.sentence_encoder)
    report = ingest(small, "limits", [("a.txt", b"alpha text one."), ("b.txt", b"beta text two.")], tokens)
    assert [f.status for f in report.files] == ["added", "error"]
    assert "limit is 1" in report.files[1].message
    with pytest.raises(LimitError, match="chunks"):
        small.check_limits("limits", files=0, n_bytes=0, chunks=10)


def test_expired_sessions_are_swept(store, tokens):
    ingest(store, "old-session", [("x.txt", b"Some text to keep for a while.")], tokens)
    name = session_collection_name("old-session")
    assert name not in store.sweep()  # fresh
    assert name in store.sweep(now=time.time() + store.settings.session_ttl_s + 120)
    assert name not in [c.name for c in store.client.list_collections()]


def test_reading_a_session_that_never_uploaded_creates_nothing(store):
    name = session_collection_name("only-asks")
    assert store.search("only-asks", "anything at all", 3, include_sample=False) == []
    assert store.documents("only-asks") == [] and not store.has_document("only-asks", "x")
    assert store.delete_document("only-asks", "x") == 0
    assert name not in [c.name for c in store.client.list_collections()]


def _open_store_files(store) -> int:
    import psutil

    root = str(store.settings.data_dir)
    return sum(1 for f in psutil.Process().open_files() if f.path.startswith(root))


def test_reopening_the_store_releases_deleted_collections_and_keeps_the_rest(own_settings, registry, tokens):
    """chromadb keeps deleted collections' index files open until its client closes (chroma#3296)."""
    from dataclasses import replace

    store = DocumentStore(replace(own_settings, data_dir=own_settings.data_dir / "recycle"), registry.sentence_encoder)
    ingest(store, "stays", [("fact.txt", FACT.encode())], tokens)
    for i in range(6):
        ingest(store, f"visitor-{i}", [("v.txt", f"Visitor {i} wrote about attention heads.".encode())], tokens)
        store.search(f"visitor-{i}", "attention", 1, include_sample=False)  # loads its index
        assert store.drop_session(f"visitor-{i}")
    held = _open_store_files(store)
    with store._in_use():  # a call in flight: the client must not be closed under it
        assert not store.recycle_if_idle()
    assert store.recycle_if_idle()
    assert _open_store_files(store) < held
    assert not store.recycle_if_idle()  # nothing deleted since
    assert [d.source for d in store.documents("stays")] == ["fact.txt"]
    assert store.search("stays", "vault code of the giraffe", 1, include_sample=False)[0].text == FACT


def test_housekeeper_sweeps_expired_sessions_reopens_the_store_and_trims_the_heap(own_settings, registry, tokens):
    from dataclasses import replace

    from models.housekeeping import Housekeeper

    store = DocumentStore(replace(own_settings, data_dir=own_settings.data_dir / "housekeeping", session_ttl_s=0),
                          registry.sentence_encoder)
    ingest(store, "gone-quiet", [("x.txt", b"Some text nobody asks about again.")], tokens)
    time.sleep(0.05)
    report = Housekeeper(store, every_s=60).run_once()
    assert report == {"expired_sessions": 1, "store_reopened": True, "heap_trimmed": True}  # glibc on Linux
    assert store.documents("gone-quiet") == []


def test_mmr_returns_k_distinct_chunks(store, tokens):
    text = "\n\n".join(["Quantization stores weights in int8."] * 3 + ["Quantization error raises perplexity."])
    ingest(store, "mmr", [("q.txt", text.encode())], make_splitter(40, 0, "characters"))
    plain = store.search("mmr", "quantization int8", 2, include_sample=False)
    diverse = store.search("mmr", "quantization int8", 2, include_sample=False, mmr=True)
    assert len(plain) == len(diverse) == 2
    assert len({h.text for h in diverse}) == 2


# ---- answers -----------------------------------------------------------------------------------------
def test_below_threshold_the_bot_says_so_without_the_model(store, tokens):
    ingest(store, "thr", [("fact.txt", FACT.encode())], tokens)
    turns = list(rag_chain.answer(None, lambda q: store.search("thr", q, 3), "Who won the 1998 World Cup?",
                                  threshold=0.5))
    assert turns[-1].answer == rag_chain.NO_ANSWER and not turns[-1].grounded and turns[-1].prompt is None


def test_a_question_turn_ends_with_its_cited_answer(store, tokens, registry, encoder):
    """rewrite -> retrieve -> answer -> cite in one call: the chat and rag_ask read the same result."""
    from models.rag import turn as rag_turn

    ingest(store, "turn", [("fact.txt", FACT.encode())], tokens)
    seen = []  # (done, cited) as each turn was yielded (the chain updates one turn in place)
    for final in rag_turn.ask(store, "turn", registry.chat_model(), encoder,
                              "What code does the purple giraffe of Zanzibar guard?",
                              retrieval=rag_turn.Retrieval(top_k=2, include_sample=False)):
        seen.append((final.done, final.cited is not None))
    assert seen[-1] == (True, True) and not any(cited for _, cited in seen[:-1])  # cited once it is complete
    assert final.done and final.grounded and final.cited is not None
    assert final.text == final.cited.text and re.search(r"\[\d\]", final.text)
    result = rag_turn.summary(final)
    assert result["answer"] == final.text and result["grounded"]
    assert any(FACT in s["text"] and s["cited"] for s in result["sources"])
    assert rag_turn.final(iter([seen, final])) is final


def test_api_numbers_are_clamped_to_the_ui_ranges():
    from models.rag.turn import Retrieval

    assert Retrieval.clamped(10**9, 7, 1, 0) == Retrieval(8, 1.0, True, False)
    assert Retrieval.clamped(-3, -0.5, 0, 1) == Retrieval(1, 0.0, False, True)
    assert Retrieval.clamped("3", "0.4", False, True) == Retrieval(3, 0.4, False, True)


def test_preview_and_ingestion_judge_a_file_the_same_way(store, tokens, own_settings):
    """One parse stage: the chunk preview applies ingestion's name, size and parser guards."""
    from models.rag.ingest import max_upload_bytes, parse_files

    files = [("../../notes/fact.txt", FACT.encode()), ("huge.txt", b"a" * (max_upload_bytes(own_settings) + 1)),
             ("empty.txt", b""), ("copy.txt", FACT.encode())]
    parsed = parse_files(files, max_upload_bytes(own_settings))
    assert [(r.name, r.status) for r, _ in parsed] == [("fact.txt", "added"), ("huge.txt", "error"),
                                                       ("empty.txt", "error"), ("copy.txt", "duplicate")]
    assert [d is not None for _, d in parsed] == [True, False, False, False]
    report = ingest(store, "same-way", files, tokens)
    assert [(f.name, f.status, f.message) for f in report.files] == [(r.name, r.status, r.message) for r, _ in parsed]


def test_citations_link_sentences_and_escape_html(encoder):
    hits = [Hit("1", "Beam search keeps the best partial sequences. <script>alert(1)</script>", "b<i>.md",
                None, 0.8, False),
            Hit("2", "Quantization stores weights with fewer bits.", "q.md", 3, 0.6, True)]
    cited = cite(encoder, "Quantization uses fewer bits for weights [1]. Beam search keeps several sequences.",
                 hits)
    assert [s.source for s in cited.sentences] == [2, 1]
    assert cited.text == ("Quantization uses fewer bits for weights. [2] "
                          "Beam search keeps several sequences. [1]")
    html = sources_html(cited)
    assert "<script>" not in html and "&lt;script&gt;" in html and "b&lt;i&gt;.md" in html
    assert "<mark>Beam search keeps the best partial sequences.</mark>" in html
    assert "q.md, page 3" in html


def test_follow_ups_are_detected():
    history = [{"role": "user", "content": "What is BERT?"}, {"role": "assistant", "content": "A model."}]
    assert rag_chain.needs_rewrite(history, "How was it trained?")
    assert not rag_chain.needs_rewrite(history, "What does beam search keep at every step?")
    assert not rag_chain.needs_rewrite([], "How was it trained?")
    assert rag_chain.trim_repeats("A b. C d. A b. C") == ("A b. C d.", True)


def test_sample_corpus_retrieval_quality(encoder):
    questions = load_questions()
    assert len(questions) >= 20
    docs = load_folder(CORPUS_DIR)
    assert {q.document for q in questions} <= {d.name for d in docs}
    report = evaluate(encoder, docs, questions, make_splitter(128, 16, "tokens", encoder.tokenizer), k=4)
    assert report.answerable == 1.0
    assert report.hit_at_k >= 0.85 and report.mrr >= 0.7
    hit_at_1 = sum(r["rank"] == 1 for r in report.rows) / len(report.rows)
    assert hit_at_1 <= report.hit_at_k and report.mrr >= hit_at_1


def test_follow_up_is_rewritten_with_the_conversation(registry):
    history = [{"role": "user", "content": "What is BERT?"},
               {"role": "assistant", "content": "BERT is an encoder-only transformer model."}]
    standalone, how = rag_chain.rewrite_question(registry.chat_model(), history, "How was it trained?")
    assert "bert" in standalone.lower() and "trained" in standalone.lower(), (standalone, how)
    assert rag_chain._clean_rewrite("How was it trained?", "How was it trained?", "User: What is BERT?") is None
    assert rag_chain._clean_rewrite("How was BERT trained?", "How was it trained?", "User: What is BERT?")

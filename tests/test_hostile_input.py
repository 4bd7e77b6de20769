"""Hostile input through the public API: huge prompts, emoji, right-to-left text, HTML/JS.

Each request gets an answer or a clear message, and the app keeps serving afterwards.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_rag_app import rows

SCRIPT = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def still_serving(app_url: str) -> bool:
    with urllib.request.urlopen(app_url, timeout=30) as response:
        return response.status == 200


def test_100k_character_prompt_is_truncated_not_fatal(client, app_url):
    job = client.submit("why " * 25_000, "", "Generative (SmolLM2 writes the answer)", [], 16, 0, 0,
                        api_name="/qna_chat")
    history, _, prompt, _, _, notice = job.result(timeout=600)
    assert "question was cut" in notice and history[-1]["role"] == "assistant"
    assert len(prompt) < 5_000
    assert still_serving(app_url)


HUGE = "why " * 25_000  # 100k characters


@pytest.mark.parametrize("api_name, args, message", [
    ("/decode", (HUGE,), "the playground takes up to 4,000"),
    ("/rag_ask", (HUGE,), "ask in at most 2,000"),
    ("/quant_compare", ("chat", HUGE, 8), "keep it under"),
])
def test_100k_characters_get_a_clear_limit_in_every_tab(client, app_url, api_name, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=api_name)
    assert still_serving(app_url)


def test_100k_characters_in_the_attention_tab_are_cut_with_a_notice(client, app_url):
    data = client.predict(HUGE, "", "encoder", 0, api_name="/attention")
    assert len(data["tokens"]) <= 256 and "the model saw only the first" in data["notices"][0]
    assert still_serving(app_url)


@pytest.mark.parametrize("question", ["مرحبا، ما هي عاصمة فرنسا؟", "🗼🥐 capital of France? 🇫🇷", SCRIPT])
def test_unicode_rtl_emoji_and_markup_questions_are_answered(client, question):
    job = client.submit(question, "Paris is the capital of France.", "Generative (SmolLM2 writes the answer)",
                        [], 16, 0, 0, api_name="/qna_chat")
    history, _, prompt, _, passage, _ = job.result(timeout=300)
    assert question in prompt  # sent to the model as text, unchanged
    assert history[-2]["role"] == "user"


# ---- hostile uploads (the document chat's parser) ----

def docx_zip_bomb(unzipped_mb: int) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", b"\0" * (unzipped_mb * 1_000_000))
    return buffer.getvalue()


@pytest.mark.parametrize("raw, expected", [
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\report.pdf", "report.pdf"),
    ("evil\x00name.txt", "evilname.txt"),
    ("..", "unnamed file"),
    ("<img src=x onerror=alert(1)>.txt", "<img src=x onerror=alert(1)>.txt"),  # kept as text; escaped on display
])
def test_upload_names_lose_folders_and_control_characters(raw, expected):
    from models.rag.documents import safe_name

    assert safe_name(raw) == expected


def test_very_long_upload_names_are_shortened_keeping_the_extension():
    from models.rag.documents import MAX_NAME_CHARS, safe_name

    name = safe_name("a" * 5000 + ".pdf")
    assert len(name) <= MAX_NAME_CHARS and name.endswith(".pdf")


def test_docx_zip_bomb_is_refused_before_inflating():
    from models.rag.documents import DocumentError, load_document

    bomb = docx_zip_bomb(150)
    assert len(bomb) < 1_000_000  # small on disk, 150 MB unpacked
    with pytest.raises(DocumentError, match="unpack to 150 MB"):
        load_document("bomb.docx", bomb)


def test_pdf_with_thousands_of_pages_is_bounded():
    from models.rag.documents import MAX_PDF_PAGES, DocumentError, load_document, text_pdf

    with pytest.raises(DocumentError, match=f"limit is {MAX_PDF_PAGES}"):
        load_document("huge.pdf", text_pdf(["page"] * (MAX_PDF_PAGES + 500)))


def test_binary_renamed_txt_is_refused_by_content():
    import os

    from models.rag.documents import DocumentError, load_document

    with pytest.raises(DocumentError, match="binary content"):
        load_document("notes.txt", os.urandom(4096) + b"\0")


def test_a_hostile_upload_batch_through_the_app_loses_nothing(app_url, tmp_path):
    """Bomb, 1,500-page PDF, binary .txt and markup/RTL/very long names in one upload: the good
    files go in under safe names, each bad one gets its own message, and the app keeps serving."""
    from models.rag.documents import MAX_NAME_CHARS, MAX_PDF_PAGES, text_pdf

    files = {
        "<img src=x onerror=alert(1)> مرحبا 🗼.txt": b"The night ferry to Lindholm leaves at 23:40 from pier 9.",
        "n" * 200 + ".md": b"# Long name\n\nThe harbour master keeps a blue logbook.",
        "bomb.docx": docx_zip_bomb(150),
        "huge.pdf": text_pdf(["page"] * (MAX_PDF_PAGES + 500)),
        "notes.txt": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    client = Client(app_url, verbose=False)
    report, status, docs, _ = client.predict([handle_file(str(tmp_path / n)) for n in files], 64, 8, "tokens",
                                             api_name="/rag_ingest")
    by_status = {}
    for name, state, *_, message in rows(report):
        by_status.setdefault(state, []).append((name, message))
    assert "2 of 5 file(s) indexed" in status
    marked, long_name = sorted(name for name, _ in by_status["added"])
    assert "onerror=alert(1) مرحبا 🗼.txt" in marked  # gradio drops < and > from upload names
    assert long_name.startswith("nnn") and long_name.endswith(".md") and len(long_name) <= MAX_NAME_CHARS
    messages = " | ".join(message for _, message in by_status["error"])
    assert "unpack to 150 MB" in messages and f"limit is {MAX_PDF_PAGES}" in messages
    assert "binary content" in messages
    answer = client.predict("When does the night ferry to Lindholm leave?", 2, 0.3, False, False,
                            api_name="/rag_ask")
    assert answer["grounded"] and any("23:40" in s["text"] for s in answer["sources"])
    assert all(Path(s["file"]).name == s["file"] for s in answer["sources"])  # no folder ever reaches a name
    assert still_serving(app_url)


def test_markup_in_tokens_and_sentences_stays_text_in_the_quantized_views():
    from html.parser import HTMLParser

    from tabs import quantized_views as views

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags: set[str] = set()
            self.attrs: set[str] = set()

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            self.attrs.update(name for name, _ in attrs)

    pieces = [
        views.column([SCRIPT, "\n", "ok"], 0, SCRIPT, done=False),
        views.ranking([(SCRIPT, 0.9)], 0, SCRIPT),
        views.kl_strip([{"token": SCRIPT, "kl": 0.5, "flip": True, "quant_token": SCRIPT}], SCRIPT),
        views.sentence_strip([SCRIPT], [0.95], SCRIPT),
    ]
    parser = Tags()
    parser.feed("".join(pieces))
    assert parser.tags <= {"div", "span", "ol", "li", "small", "br", "p"}
    assert parser.attrs <= {"class", "title", "style"}
    assert all("&lt;script&gt;" in piece for piece in pieces)

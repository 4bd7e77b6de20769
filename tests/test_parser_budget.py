"""Parser bombs within every size limit: small files built to make a parser slow or crash are
refused in seconds with that file's own message, and the other files of the upload go in.
"""

from __future__ import annotations

import io
import time
import zipfile
import zlib

import pytest
from conftest import patient_client
from gradio_client import handle_file
from test_rag_app import rows

from models.rag.documents import DocumentError, load_document, pdf_from_objects
from models.rag.ingest import parse_files

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Target="word/document.xml" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/></Relationships>')
W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def docx_package(body: str) -> bytes:
    """A minimal .docx (python-docx opens it too) whose body is `body`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES)
        zf.writestr("_rels/.rels", RELS)
        zf.writestr("word/document.xml", f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                                         f"<w:document {W}><w:body>{body}</w:body></w:document>")
    return buffer.getvalue()


def paragraph(text: str) -> str:
    return f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>"


def empty_paragraphs_docx(count: int) -> bytes:
    return docx_package(paragraph("Real text at the top.") + "<w:p/>" * count)


def merged_rows_docx(rows_: int) -> bytes:
    """A table whose first column is one vertical merge down every row (python-docx recursed on it)."""
    first = f"<w:tr><w:tc><w:tcPr><w:vMerge w:val=\"restart\"/></w:tcPr>{paragraph('Merged')}</w:tc>" \
            f"<w:tc>{paragraph('row 0')}</w:tc></w:tr>"
    rest = "".join(f"<w:tr><w:tc><w:tcPr><w:vMerge/></w:tcPr><w:p/></w:tc><w:tc>{paragraph(f'row {i}')}</w:tc></w:tr>"
                   for i in range(1, rows_))
    return docx_package(f"<w:tbl>{first}{rest}</w:tbl>")


def stream(data: bytes, flate: bool = False) -> bytes:
    data = zlib.compress(data, 9) if flate else data
    return (b"<< /Length %d%s >>\nstream\n" % (len(data), b" /Filter /FlateDecode" if flate else b"")
            + data + b"\nendstream")


def pages_pdf(n_pages: int, content: bytes, flate: bool = False) -> bytes:
    """`n_pages` pages that all draw the same content stream (object 4)."""
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(n_pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n_pages),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>", stream(content, flate)]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
                b"/Contents 4 0 R >>"] * n_pages
    return pdf_from_objects(objects)


def shared_stream_pdf() -> bytes:
    """1,000 pages sharing one 1 MB content stream: small on disk, hours of pypdf text extraction."""
    line = b"BT /F1 10 Tf 40 800 Td (Every page draws this same long line of text.) Tj ET\n"
    return pages_pdf(1000, line * (1_000_000 // len(line)), flate=True)


def stamped_form_pdf(uses: int = 20_000) -> bytes:
    """One page drawing a 1,000-line form 20,000 times: 50 KB, within every byte budget, and pypdf
    extracts the form's text every time (hours). Only the child process's time limit stops it."""
    form = b"BT /F1 10 Tf 40 800 Td (Stamped form text.) Tj ET\n" * 1000
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>", stream(b"/X0 Do\n" * uses, flate=True),
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> "
               b"/XObject << /X0 6 0 R >> >> /Contents 4 0 R >>",
               b"<< /Type /XObject /Subtype /Form /BBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
               + stream(form)[3:]]
    return pdf_from_objects(objects)


def flate_bomb_pdf() -> bytes:
    """One page whose content stream inflates past pypdf's 75 MB limit (LimitReachedError)."""
    return pages_pdf(1, b" " * 80_000_000, flate=True)


BOMBS = {
    "empty-paragraphs.docx": (lambda: empty_paragraphs_docx(300_000), "too complex"),
    "merged-rows.docx": (lambda: merged_rows_docx(3000), None),  # read fine now: a merge is read once
    "shared-stream.pdf": (shared_stream_pdf, "too complex"),
    "flate-bomb.pdf": (flate_bomb_pdf, "safety limits"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_each_parser_bomb_is_judged_in_seconds(name):
    build, message = BOMBS[name]
    data = build()
    assert len(data) < 1_000_000
    start = time.perf_counter()
    if message is None:
        doc = load_document(name, data)
        assert "Merged | row 0" in doc.text and "| row 2999" in doc.text
    else:
        with pytest.raises(DocumentError, match=message) as info:
            load_document(name, data)
        assert str(info.value).startswith(name)
    assert time.perf_counter() - start < 10


def test_a_docx_is_read_in_document_order_with_tables_and_text_boxes():
    body = (paragraph("Before the table.")
            + "<w:tbl><w:tr><w:tc>" + paragraph("a1") + "</w:tc><w:tc>" + paragraph("b1") + "</w:tc></w:tr></w:tbl>"
            + "<w:p><w:r><w:t>Tab</w:t><w:tab/><w:t>and</w:t><w:br/><w:t>break.</w:t></w:r></w:p>")
    assert load_document("order.docx", docx_package(body)).text == "Before the table.\na1 | b1\nTab and\nbreak."


def test_a_file_that_is_slow_inside_one_step_is_stopped_by_the_time_limit():
    from models.rag.parse_worker import load_isolated

    start = time.perf_counter()
    with pytest.raises(DocumentError, match="took longer than 1 s, so it was stopped") as info:
        load_isolated("stamped.pdf", stamped_form_pdf(), max_seconds=1, grace_s=1)
    assert str(info.value).startswith("stamped.pdf") and time.perf_counter() - start < 10
    assert load_isolated("fine.txt", b"Quick to read.", max_seconds=1).text == "Quick to read."


def test_every_parser_exception_is_that_files_message():
    """A parser failing in a way nobody listed (here a RecursionError) never fails the batch."""
    import models.rag.documents as documents

    def explode(name, data):
        raise RecursionError("maximum recursion depth exceeded")

    real, documents._parse_html = documents._parse_html, lambda text: explode(None, text)
    try:
        results = parse_files([("deep.html", b"<html><body><p>x</p></body></html>"), ("ok.txt", b"Fine text.")],
                              10_000_000, isolate=False)  # in this process, where the parser is replaced
    finally:
        documents._parse_html = real
    (deep, _), (ok, doc) = results
    assert deep.status == "error" and "nested too deeply" in deep.message
    assert ok.status == "added" and doc is not None


def test_a_batch_of_bombs_through_the_app_loses_the_good_file(app_url, tmp_path):
    files = {name: build() for name, (build, message) in BOMBS.items() if message}
    files["good.txt"] = b"The harbour master keeps a blue logbook in the tower."
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    client = patient_client(app_url)
    start = time.perf_counter()
    report, status, *_ = client.predict([handle_file(str(tmp_path / n)) for n in files], 64, 8, "tokens",
                                        api_name="/rag_ingest")
    assert time.perf_counter() - start < 90
    by_name = {r[0]: r for r in rows(report)}
    assert by_name["good.txt"][1] == "added"
    assert all(by_name[n][1] == "error" and by_name[n][5].startswith(n) for n in files if n != "good.txt")


def test_a_long_real_document_stays_well_inside_the_budget():
    body = "".join(f'<w:p><w:pPr><w:pStyle w:val="Normal"/></w:pPr><w:r><w:rPr><w:b/></w:rPr><w:t>Section {i}.</w:t>'
                   f"</w:r><w:r><w:t xml:space=\"preserve\"> The tide tables list high water at dawn.</w:t></w:r></w:p>"
                   for i in range(6000))  # ~200 pages of short paragraphs, ~60,000 elements
    start = time.perf_counter()
    doc = load_document("report.docx", docx_package(body))
    assert doc.text.count("\n") == 5999 and doc.text.endswith("Section 5999. The tide tables list high water at dawn.")
    assert time.perf_counter() - start < 10


def test_text_without_spaces_is_counted_before_it_is_split(app_url, tmp_path):
    """2 MB without a space: the splitter used to measure it character by character (minutes),
    then refuse it anyway. Now the estimate refuses it first, in the preview and at indexing."""
    path = tmp_path / "spaceless.txt"
    path.write_text("ab" * 1_000_000)
    client = patient_client(app_url)
    start = time.perf_counter()
    table, _ = client.predict([handle_file(str(path))], 128, 16, "tokens", api_name="/rag_preview")
    assert "a session holds at most" in rows(table)[0][4]
    report, *_ = client.predict([handle_file(str(path))], 128, 16, "tokens", api_name="/rag_ingest")
    assert rows(report)[0][1] == "error" and "chunks; the limit is" in rows(report)[0][5]
    assert time.perf_counter() - start < 60


def test_the_preview_has_the_ingestion_guards_and_waits_in_the_model_queue(app_url, settings, tmp_path):
    paths = []
    for i in range(settings.max_files_per_session + 1):
        paths.append(tmp_path / f"n{i}.txt")
        paths[-1].write_text(f"Note {i}.")
    client = patient_client(app_url)
    with pytest.raises(Exception, match="a session holds at most"):
        client.predict([handle_file(str(p)) for p in paths], 64, 8, "tokens", api_name="/rag_preview")
    # Every model slot busy indexing ~100 chunks: the preview waits its turn instead of running beside them.
    long_note = tmp_path / "long.txt"
    long_note.write_text(" ".join(f"Sentence {i} is about the tides of the northern sea." for i in range(250)))
    others = [patient_client(app_url) for _ in range(settings.model_concurrency)]
    busy = [other.submit([handle_file(str(long_note))], 32, 0, "tokens", api_name="/rag_ingest") for other in others]
    time.sleep(0.5)
    preview = client.submit([handle_file(str(paths[0]))], 64, 8, "tokens", api_name="/rag_preview")
    deadline = time.monotonic() + 300
    while not preview.done() and not any(job.done() for job in busy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(job.done() for job in busy), "the preview ran beside two model jobs instead of after one"
    assert rows(preview.result(timeout=120)[0])[0][0] == "n0.txt"

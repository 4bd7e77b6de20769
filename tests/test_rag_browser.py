"""A real browser (Debian chromium) uploads a document, asks about it and sees a cited answer."""

from __future__ import annotations

import shutil
import time

import pytest
from conftest import screenshot

pytestmark = pytest.mark.browser

FACT = ("Field notes from the Zanzibar reserve.\n\n"
        "The purple giraffe of Zanzibar guards the vault code 7731. "
        "Keepers feed it acacia leaves every morning at dawn.\n")


def session_collections_holding(settings, source: str) -> list[str]:
    """Names of session collections (in the app's embedded store) holding chunks of `source`."""
    from chromadb.errors import NotFoundError

    from models.rag.store import SESSION_PREFIX, make_client

    client = make_client(settings)
    names = []
    for collection in client.list_collections():
        if not collection.name.startswith(SESSION_PREFIX):
            continue
        try:  # the app may delete it between the listing and this read (that is what we wait for)
            if client.get_collection(collection.name).get(where={"source": source}, limit=1, include=[])["ids"]:
                names.append(collection.name)
        except NotFoundError:
            continue
    return names


def test_upload_ask_and_see_a_cited_answer(page, tmp_path, settings):
    path = tmp_path / "giraffe-notes.txt"
    path.write_text(FACT)
    page.get_by_role("tab", name="Chat with your documents").click()
    page.locator("#rag-files input[type=file]").set_input_files(str(path))
    page.wait_for_function(
        "() => /giraffe-notes/.test(document.querySelector('#rag-files').innerText)", timeout=30_000)
    page.locator("#rag-ingest").click()
    page.wait_for_function(
        "() => /1 of 1 file\\(s\\) indexed/.test(document.querySelector('#rag-status').innerText)",
        timeout=180_000)

    page.locator("#rag-question textarea").fill("What code does the purple giraffe guard?")
    page.locator("#rag-ask").click()
    page.wait_for_function(
        "() => /giraffe-notes\\.txt/.test((document.querySelector('#rag-sources') || {}).innerText || '')",
        timeout=240_000)
    chat = page.locator("#rag-chat").inner_text()
    assert "7731" in chat
    assert any(f"[{n}]" in chat for n in range(1, 5)), chat
    sources = page.locator("#rag-sources")
    assert sources.locator("mark").count() >= 1  # the matching sentence is highlighted
    # the answer was checked against the sources: each claim carries its mark, the decision its reason
    marks = sources.locator(".rag-mark")
    assert marks.count() >= 1 and all(t in ("✓ supported", "✗ unsupported") for t in marks.all_inner_texts())
    assert "Decision:" in sources.inner_text() and "Refusal signals and rule" in sources.inner_text()
    signals = sources.locator(".rag-signals").text_content()  # folded: read, not shown
    assert "figures or names found nowhere in what it read" in signals and "the answer is a denial" in signals
    assert "Standalone question" in page.locator("#rag-standalone").inner_text()
    path = screenshot(page, "rag")
    assert path.stat().st_size > 10_000
    readme_shot = path.parents[1].parent / "assets" / "screenshots" / "rag.png"
    if not readme_shot.exists():  # refresh it on purpose by deleting it, not on every run
        shutil.copy(path, readme_shot)
    assert page.blocked_requests == [], "the page tried to reach another host"

    # Closing the tab is not the end of the session: its documents stay for the grace period, so
    # a dropped Wi-Fi loses nothing (their removal after it is in test_session_lifetime.py).
    assert len(session_collections_holding(settings, "giraffe-notes.txt")) == 1
    page.context.close()
    time.sleep(3)
    assert len(session_collections_holding(settings, "giraffe-notes.txt")) == 1


def test_answers_with_and_without_retrieval_stand_side_by_side(page):
    """The comparison toggle shows the no-retrieval answer beside the cited conversation."""
    page.get_by_role("tab", name="Chat with your documents").click()
    page.get_by_label("Also answer without retrieval").check()
    page.locator("#rag-question textarea").fill("What does the attention mechanism let a token do?")
    page.locator("#rag-ask").click()
    page.wait_for_function("() => /\\[\\d+\\]/.test(document.querySelector('#rag-chat').innerText)", timeout=300000)
    page.wait_for_function("() => document.querySelector('#rag-plain textarea').value.length > 10", timeout=300000)
    box_chat = page.locator("#rag-chat").bounding_box()
    box_plain = page.locator("#rag-plain").bounding_box()
    screenshot(page, "rag-compare")
    assert abs(box_chat["y"] - box_plain["y"]) < 80 and box_plain["x"] > box_chat["x"] + box_chat["width"] - 5

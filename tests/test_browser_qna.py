"""A real browser (Debian chromium) asks the QnA bot a question and reads the streamed answer."""

from __future__ import annotations

import shutil

import pytest
from conftest import screenshot

pytestmark = pytest.mark.browser


def test_ask_a_question_in_the_browser(page):
    page.get_by_role("tab", name="QnA bot").click()
    page.locator("#qna-question textarea").fill("What is the capital of France?")
    page.get_by_label("Passage (optional)").fill(
        "Paris is the capital and largest city of France. The Eiffel Tower was completed in 1889.")
    page.locator("#qna-ask").click()
    bot = page.locator("#qna-chat .message.bot, #qna-chat [data-testid='bot']").last
    bot.wait_for(timeout=120_000)
    page.wait_for_function(
        "() => document.querySelector('#qna-chat') && /Paris/.test(document.querySelector('#qna-chat').innerText)",
        timeout=120_000)
    page.get_by_text("What the model saw").click()
    page.wait_for_timeout(500)
    # The README's screenshot shows the whole app: every tab in the tab bar, not a one-tab demo.
    from app import TABS

    hidden_tabs = [title for title, _ in TABS if not page.get_by_role("tab", name=title, exact=True).is_visible()]
    assert not hidden_tabs, f"tabs missing from the tab bar: {hidden_tabs}"
    path = screenshot(page, "qna")
    readme_copy = path.parents[1].parent / "assets" / "screenshots" / "qna.png"
    if not readme_copy.exists():  # delete it to refresh the README's screenshot
        shutil.copy(path, readme_copy)
    assert "Paris" in page.locator("#qna-chat").inner_text()
    assert page.blocked_requests == [], "the page tried to reach another host"
    # Shift+Enter in the (two-line) question box asks too: one listener for the button and the box (gr.on).
    page.locator("#qna-question textarea").fill("When was the Eiffel Tower completed?")
    page.locator("#qna-question textarea").press("Shift+Enter")
    page.wait_for_function("() => /When was the Eiffel/.test(document.querySelector('#qna-chat').innerText)"
                           " && document.querySelector('#qna-question textarea').value === ''", timeout=120_000)

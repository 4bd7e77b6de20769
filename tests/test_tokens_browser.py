"""A real browser (Debian chromium, offline) uses the "From text to numbers" tab."""

from __future__ import annotations

import pytest
from conftest import readme_screenshot, screenshot

pytestmark = pytest.mark.browser
LONG = 300_000  # ms: the first use of a model on 2 busy cores includes loading it
TAB = "From text to numbers"


def pieces(page, selector: str) -> list[str]:
    """The token strings of one tokenizer's chips (each chip also shows its id in a <sub>)."""
    return page.evaluate(f"[...document.querySelectorAll('{selector} .tok-piece')].map(e => e.firstChild.textContent)")


def test_click_an_example_and_see_the_pieces(page):
    page.get_by_role("tab", name=TAB).click()
    page.get_by_role("tab", name="Tokenizers").click()
    page.get_by_text("A long number", exact=True).click()  # a one-click example: fills the text and runs
    page.wait_for_selector("#tokens-encoder-pieces .tok-piece", timeout=LONG)
    chat, encoder = pieces(page, "#tokens-chat-pieces"), pieces(page, "#tokens-encoder-pieces")
    assert "8,045,311,447" in page.locator("#tokens-text textarea").input_value()
    assert ["8", ",", "0", "4", "5", ","] == chat[chat.index("8"):][:6]  # SmolLM2: one token per digit
    assert encoder[0] == "[CLS]" and ["04", "##5"] == encoder[encoder.index("04"):][:2]  # WordPiece: '##'
    assert "2024" not in chat and ["202", "##4"] == encoder[encoder.index("202"):][:2]
    # the longest word is explained at once: no merge list entry joins two digits in SmolLM2
    page.wait_for_selector("#tokens-merges :text('no listed merge joins them')", timeout=LONG)
    assert "lookups" in page.locator("#tokens-lookups").inner_text()
    page.wait_for_timeout(500)
    readme_screenshot(page, "tokens")  # assets/screenshots/tokens.png when missing
    assert not page.blocked_requests, page.blocked_requests


def test_hostile_text_stays_text(page):
    page.get_by_role("tab", name=TAB).click()
    hostile = '<img src=x onerror="window.hacked=1"> <script>window.hacked=2</script>'
    page.locator("#tokens-text textarea").fill(hostile)
    page.locator("#tokens-cut").click()
    page.wait_for_selector("#tokens-chat-pieces .tok-piece", timeout=LONG)
    assert page.locator("#tokens-chat-pieces img, #tokens-encoder-pieces img, #tokens-merges img").count() == 0
    assert "".join(pieces(page, "#tokens-chat-pieces")).replace("Ġ", " ") == hostile  # shown as the text it is
    assert page.evaluate("window.hacked") is None


def test_logit_lens_grid_and_a_clicked_cell(page):
    page.get_by_role("tab", name=TAB).click()
    page.get_by_role("tab", name="What each layer predicts").click()
    page.get_by_text("The opposite of hot is", exact=True).click()  # an example fills the prompt
    page.locator("#tokens-lens-run").click()
    page.wait_for_selector("#tokens-lens-cell :text('final choice')", timeout=LONG)
    assert "layer 30" in page.locator("#tokens-lens-cell").inner_text()
    grid = page.locator("#tokens-lens-grid")
    assert "read after" in grid.inner_text() and "layer 30" in grid.inner_text()
    row = grid.get_by_role("row").filter(has_text="layer 28").first
    row.get_by_role("gridcell").nth(2).click()  # the third column: position 1
    page.wait_for_function("() => /layer 28\\*?\\*?, after position 1/.test("
                           "document.querySelector('#tokens-lens-cell').innerText)", timeout=60_000)
    screenshot(page, "tokens_lens")
    assert not page.blocked_requests, page.blocked_requests

"""The tour: a student uses each of the seven tabs, in lesson order, in a real browser, offline.

Every non-local request is blocked (the `page` fixture aborts them); each tab must still
produce its result, and a screenshot of each is saved under tests/artifacts/tour-*.png.
"""

from __future__ import annotations

import pytest
from conftest import screenshot

pytestmark = pytest.mark.browser
LONG = 300_000  # ms: first use of a model on 2 busy cores includes loading it


def text_of(selector: str) -> str:
    return f"(document.querySelector('{selector}') || {{innerText: ''}}).innerText"


def wait_text(page, selector: str, pattern: str, timeout: int = LONG) -> None:
    page.wait_for_function(f"() => new RegExp({pattern!r}).test({text_of(selector)})", timeout=timeout)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(300)


def test_tour_of_all_seven_tabs_offline(page):
    open_tab(page, "From text to numbers")
    page.get_by_text("A long number", exact=True).click()  # a one-click example fills the text and runs
    wait_text(page, "#tokens-chat-pieces", "\\d")
    wait_text(page, "#tokens-encoder-pieces", "CLS")
    screenshot(page, "tour-tokens")

    open_tab(page, "QnA bot")
    page.locator("#qna-question textarea").fill("What is the capital of France?")
    page.get_by_label("Passage (optional)").fill("Paris is the capital of France.")
    page.locator("#qna-ask").click()
    wait_text(page, "#qna-chat", "Paris")
    screenshot(page, "tour-qna")

    open_tab(page, "Decoding playground")
    page.locator("#decoding-generate").click()
    wait_text(page, "#decoding-output", "\\w+")
    screenshot(page, "tour-decoding")

    open_tab(page, "Attention visualizer")
    page.locator("#attention-show").click()
    page.wait_for_selector("#attention-views iframe", timeout=LONG)
    frame = page.frame_locator("#attention-views iframe").first
    frame.locator("svg").first.wait_for(timeout=LONG)
    screenshot(page, "tour-attention")

    open_tab(page, "Fine-tuning")
    page.get_by_role("tab", name="1 · Transfer learning on MiniLM").click()
    page.locator("#ft-train").click()  # the defaults: paraphrase pairs, frozen encoder + linear head
    wait_text(page, "#ft-status", "Done")
    wait_text(page, "#ft-scores", "validation accuracy")
    screenshot(page, "tour-finetune")

    open_tab(page, "Chat with your documents")
    page.locator("#rag-question textarea").fill("What does the attention mechanism let a token do?")
    page.locator("#rag-ask").click()
    wait_text(page, "#rag-chat", "\\[\\d+\\]|don't contain")
    wait_text(page, "#rag-sources", "\\w+")
    screenshot(page, "tour-documents")

    open_tab(page, "Quantized vs full")
    page.locator("#quant-run").click()
    wait_text(page, "#quant-table", "fp32 again \\(noise floor\\)", timeout=2 * LONG)
    screenshot(page, "tour-quantized")

    assert page.blocked_requests == [], f"requests to other hosts: {page.blocked_requests[:5]}"

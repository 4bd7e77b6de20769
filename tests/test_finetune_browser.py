"""The Fine-tuning tab in a real browser, offline: train the frozen head and see the curve and the
scores; the README screenshot is taken from this page."""

from __future__ import annotations

import pytest
from conftest import readme_screenshot

pytestmark = pytest.mark.browser
LONG = 300_000  # ms: the first run embeds every sentence of the task on busy cores


def test_browser_trains_the_frozen_head_and_shows_curve_and_scores(page):
    page.get_by_role("tab", name="Fine-tuning").click()
    page.get_by_role("tab", name="1 · Transfer learning on MiniLM").click()
    assert page.locator("#ft-steps input[type=number]").input_value() == "300"  # the frozen head's default
    page.locator("#ft-train").click()  # the defaults: paraphrase pairs, frozen encoder + linear head
    page.wait_for_selector("#ft-status :text('Done')", timeout=LONG)
    page.wait_for_selector("#ft-curve canvas, #ft-curve svg", timeout=30_000)
    scores = page.locator("#ft-scores").inner_text()
    assert "validation accuracy" in scores and "zero-shot" in scores and "fine-tuned" in scores
    assert "trainable of" in page.locator("#ft-params").inner_text()
    assert "%" in page.locator("#ft-summary").inner_text()
    assert "frozen encoder" in page.locator("#ft-compared").inner_text()
    page.wait_for_timeout(800)  # let the line chart and the embedding plot paint
    readme_screenshot(page, "finetune")  # assets/screenshots/finetune.png when missing
    assert not page.blocked_requests, page.blocked_requests

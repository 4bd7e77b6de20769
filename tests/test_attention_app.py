"""The Attention tab through the running app: the `attention` API, the views, walk-through and
knock-out endpoints (one client session, so the State carries over), and a real browser
rendering both bertviz views with every non-local request blocked."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from conftest import readme_screenshot
from gradio_client.exceptions import AppError


def test_view_layers_and_heatmap_pruning(tmp_path):
    from tabs.attention import prune, view_layers

    assert view_layers("0-2, 5", 6) == [0, 1, 2, 5] and view_layers("", 6) == list(range(6))
    assert view_layers("", 30) == [0, 6, 12, 17, 23, 29]
    for bad in ("7", "a-b"):
        with pytest.raises(ValueError):
            view_layers(bad, 6)
    # A huge range is refused by its bounds, before any set of that size is built.
    start = time.perf_counter()
    with pytest.raises(ValueError, match="20000000000 does not exist"):
        view_layers("0-20000000000", 6)
    assert time.perf_counter() - start < 0.5
    old, new = tmp_path / "old.png", tmp_path / "new.png"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (time.time() - 3600,) * 2)
    prune(str(tmp_path), max_age_s=900)
    assert not old.exists() and new.exists()


def test_attention_api_returns_layers_heads_tokens(client):
    out = client.predict("The cat sat on the mat.", "It was tired.", "encoder", 0, api_name="/attention")
    att = np.array(out["attention"])
    n = len(out["tokens"])
    assert (out["kind"], out["layers"], out["heads"]) == ("encoder", 6, 12)
    assert out["tokens"][0] == "[CLS]" and att.shape == (6, 12, n, n)
    assert out["segment_ids"][out["sentence_b_start"]] == 1
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-3)


def test_attention_api_decoder_with_generated_tokens(client):
    out = client.predict("The capital of France is", "", "decoder", 2, api_name="/attention")
    att = np.array(out["attention"])
    assert (out["layers"], out["heads"]) == (30, 9) and out["generated_start"] == len(out["tokens"]) - 2
    assert np.triu(att[0, 0], k=1).max() == 0.0


def test_attention_api_limits_tokens(client):
    out = client.predict("word " * 100, "", "encoder", 0, 16, api_name="/attention")
    assert len(out["tokens"]) == 16 and "only the first 16" in out["notices"][0]
    assert np.array(out["attention"]).shape == (6, 12, 16, 16)


def test_attention_api_rejects_bad_input(client):
    with pytest.raises(AppError, match="Enter a sentence"):
        client.predict("   ", "", "encoder", 0, api_name="/attention")
    with pytest.raises(AppError, match="encoder"):
        client.predict("hi", "", "gpt", 0, api_name="/attention")


def test_views_then_walkthrough_and_knockout_in_one_session(client):
    status, views, grid, table, *pickers = client.predict(
        "encoder", "The cat sat on the mat.", "", 0, False, "", api_name="/attention_views")
    assert "all-MiniLM-L6-v2" in status and views.startswith("<iframe") and 'sandbox="allow-scripts"' in views
    assert grid.count("<td") == 72 and len(table["data"]) == 72
    assert [p["choices"][-1][1] for p in pickers] == [5, 11, 5, 11, 8]  # layers, heads, query tokens
    image, download = client.predict(5, 3, api_name="/attention_heatmap")
    assert os.path.basename(image).startswith("attention-L5-H3-") and image.endswith(".png")
    assert download["interactive"] and os.path.basename(download["value"]) == os.path.basename(image)
    text, rows = client.predict(2, 5, 3, api_name="/attention_walkthrough")
    assert "Largest difference" in text and len(rows["data"]) == 9  # [CLS] the cat sat on the mat . [SEP]
    model_weights = [row[-1] for row in rows["data"]]
    softmax = [row[-2] for row in rows["data"]]
    np.testing.assert_allclose(softmax, model_weights, atol=1e-5)
    text, rows = client.predict("0.*", api_name="/attention_knockout")
    assert "cosine to the original" in text and len(rows["data"]) == 5
    with pytest.raises(AppError, match="does not exist"):
        client.predict("9.0", api_name="/attention_knockout")


@pytest.mark.browser
def test_browser_renders_both_views_offline_and_safely(page):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.get_by_role("tab", name="Attention visualizer").click()
    frame = page.frame_locator("iframe.bertviz-frame")
    # a sentence pair first (the README screenshot): segment A/B filter in the head view
    page.locator("#attention-text textarea").fill("The animal didn't cross the street because it was too wide.")
    page.locator("#attention-text-b textarea").fill("Where was the animal?")
    page.locator("#attention-show").click()
    frame.locator("[id='attn_background_5_11']").wait_for(timeout=180_000)
    assert frame.locator("#filter option").count() == 2 * 5  # each view: All, A->A, B->B, A->B, B->A
    page.get_by_role("tab", name="Heatmap").click()
    page.locator("#attention-heatmap img").wait_for(timeout=60_000)
    page.get_by_role("tab", name="bertviz views").click()
    frame.locator("[id='attn_background_5_11']").wait_for(timeout=5_000)  # still drawn, not redrawn
    page.wait_for_timeout(3000)
    readme_screenshot(page, "attention")  # assets/screenshots/attention.png when missing
    page.locator("#attention-text-b textarea").fill("")
    hostile = 'Tom said <script>alert(1)</script> "><img src=x onerror=alert(2)> hi'
    page.locator("#attention-text textarea").fill(hostile)
    page.locator("#attention-show").click()
    frame.locator("svg text:text-is('tom')").first.wait_for(timeout=180_000)
    views = frame.locator("div[id^='bertviz-'] #vis svg")
    views.first.wait_for(timeout=180_000)
    frame.locator("div[id^='bertviz-']").nth(1).locator("#vis svg").wait_for(timeout=60_000)
    assert views.count() == 2  # head view and model view
    head_text = frame.locator("div[id^='bertviz-']").first.locator("svg text").all_text_contents()
    assert "script" in head_text and "<" in head_text  # drawn as text, never as a tag
    assert frame.locator("img").count() == 0 and page.locator("#attention-views img").count() == 0
    assert not dialogs, f"a script from the input ran: {dialogs}"
    assert page.blocked_requests == [], page.blocked_requests

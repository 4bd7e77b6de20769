"""The Quantized vs full tab through its API (gradio_client) and in a real browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import screenshot
from gradio_client.exceptions import AppError
from PIL import Image

from models.quant import schemes as qs
from models.registry import CHAT, ENCODER

SCREENSHOT = Path(__file__).resolve().parent.parent / "assets" / "screenshots" / "quantized.png"


def _column(table: dict, name: str) -> list:
    return [row[table["headers"].index(name)] for row in table["data"]]


def test_quant_compare_returns_the_cost_table(client):
    table = client.predict(CHAT, "Name three colours.", 4, api_name="/quant_compare")
    schemes = _column(table, "scheme")
    assert schemes[0] == "fp32 (full)" and "noise floor" in schemes[1]
    assert schemes[2:] == [s.label for s in qs.schemes_for(CHAT)]
    assert _column(table, "speed-up")[0] == 1.0
    assert all(ratio < 0.5 for ratio in _column(table, "size vs fp32")[2:])
    assert all(ms > 0 for ms in _column(table, "TTFT (ms)"))

    encoder = client.predict(ENCODER, "how do plants make food", 4, api_name="/quant_compare")
    assert _column(encoder, "scheme")[2:] == [s.label for s in qs.schemes_for(ENCODER)]
    assert all(v > 0 for v in _column(encoder, "tokens/s"))

    # the charts come from the rows this session's last comparison kept, not from the table
    size, speed, latency = client.predict(api_name="/quant_charts")
    assert size["sort"] == _column(encoder, "scheme")
    assert size["value"]["data"] == [list(pair) for pair in zip(_column(encoder, "scheme"),
                                                                _column(encoder, "size (MB)"), strict=True)]
    assert [v for _, v in latency["value"]["data"]] == _column(encoder, "prompt latency (ms)")
    assert len(speed["value"]["data"]) == len(_column(encoder, "scheme"))


def test_empty_prompt_is_a_clear_error(client):
    with pytest.raises(AppError, match="Type a prompt first"):
        client.predict(CHAT, "   ", 4, api_name="/quant_compare")
    with pytest.raises(AppError, match="keep it under"):
        client.predict(CHAT, "word " * 1000, 4, api_name="/quant_compare")
    with pytest.raises(AppError, match="Unknown scheme"):
        client.predict(CHAT, "onnx-int8", "hello", 4, api_name="/quant_stream")


def test_encoder_side_by_side_and_details(client):
    status, left, right, strip = client.predict(ENCODER, "onnx-int8", "<b>plants</b> & sunlight", 4,
                                                api_name="/quant_stream")
    assert "bundled sentences" in status
    assert "Photosynthesis" in left and "Photosynthesis" in right
    assert "cosine" in strip and "<b>plants" not in left + right + strip
    quality, bytes_table, _, hardware_md, kernels = client.predict(ENCODER, api_name="/quant_details")
    cosines = _column(quality, "mean cosine")
    assert cosines[0] == pytest.approx(1.0) and cosines[1] == pytest.approx(1.0)  # itself, noise floor
    assert all(0.9 < c < 1.0 for c in cosines[2:])
    assert "MatMulInteger" in " ".join(_column(kernels, "kernels (one forward pass)"))
    assert "AVX" in hardware_md or "dispatches" in hardware_md


@pytest.mark.browser
def test_browser_runs_a_comparison(page):
    page.get_by_role("tab", name="Quantized vs full").click()
    page.locator("#quant-prompt textarea").fill("Explain in one sentence what a lighthouse does.")
    number = page.locator("#quant-max-new input[type=number]")
    number.fill("12")
    number.press("Enter")
    page.locator("#quant-run").click()
    page.locator("#quant-strip .qv-tok").first.wait_for(timeout=300_000)
    page.locator("#quant-quality table").get_by_text("perplexity").first.wait_for(timeout=300_000)
    page.locator("#quant-hardware").get_by_text("dispatches").wait_for(timeout=300_000)
    assert page.locator("#quant-full .qv-text").inner_text().strip()
    assert page.locator("#quant-table").get_by_text("int4").count() >= 1
    page.wait_for_timeout(1500)  # let the bar charts draw
    path = screenshot(page, "quantized")
    if not SCREENSHOT.exists():  # delete the README's copy to refresh it, so runs leave git clean
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as shot:  # 256 colours keep the README copy under 400 KB
            shot.convert("RGB").quantize(colors=256).save(SCREENSHOT, optimize=True)
    assert page.blocked_requests == [], page.blocked_requests

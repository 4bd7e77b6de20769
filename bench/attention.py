"""Benchmark of the Attention visualizer on a 64-token input, models already loaded.

- click_to_rendered_s: in a real browser (Debian chromium, every non-local request
  blocked), from the click on "Show attention" to both bertviz views having drawn their SVG
  inside the iframe (goal <= 2 s); the median of a few clicks on alternating inputs;
  click_to_head_view_s: the same to the head view, which is drawn first;
- server_s: the handler alone (forward pass, statistics, bertviz HTML), same input, and its
  parts forward_s / views_html_s;
- iframe_render_s: the views page alone, loaded into a blank browser page until the model
  view's last thumbnail exists (the browser's share of the click);
- load_average_1min: the machine's load when measured (2 cores shared with other work);
- torch_threads: as the app sets them (GENAI_LAB_TORCH_THREADS, else cores per model job). On a CPU shared
  with other busy processes, 1 thread was ~5x faster than 2 here (threads spin-wait on each
  other): compare `GENAI_LAB_TORCH_THREADS=1 python -m bench.attention`;
- payload_bytes: the iframe HTML for 64 tokens on all-MiniLM-L6-v2 (goal <= 2 MB), and the
  same for SmolLM2 (30 layers, 6 of them shown by default).
Without chromium the browser figure is reported as None.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from pathlib import Path

from bench.in_process import offline_registry

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ROUNDS = 3
# Two different paragraphs, each cut to 64 tokens with [CLS] and [SEP] (see `sixty_four`), so
# that each click really re-renders. Natural text: a repeated word would spread attention
# evenly over its copies and draw far more lines than any real sentence.
PARAGRAPHS = [
    "Transformers read a sentence all at once. Every token builds a query, a key and a value; "
    "the query of one token is compared with the keys of all the others, and the softmax of "
    "those scores decides how much of each value flows into the token's new representation. "
    "Stacking many such layers lets the model mix information across the whole input quickly.",
    "Rivers carry water from the mountains to the sea, shaping valleys along the way. In spring "
    "the snow melts and the current grows strong; in late summer the same river may shrink to a "
    "thin stream between dry stones, waiting for the autumn rain to return and fill it again "
    "before the first frost settles over the quiet fields and the villages nearby.",
]
TEXTS: list[str] = []


def sixty_four(tokenizer, paragraph: str) -> str:
    """The paragraph cut so the encoder sees exactly 64 tokens ([CLS] + 62 + [SEP])."""
    ids = tokenizer(paragraph, add_special_tokens=False)["input_ids"][:62]
    text = tokenizer.decode(ids)
    assert len(tokenizer(text)["input_ids"]) == 64, text
    return text


def server_figures(registry) -> dict:
    from tabs.attention import analyze, view_layers
    from tabs.attention_views import views_html

    times = []
    for i in range(ROUNDS + 1):
        start = time.perf_counter()
        out = analyze(registry, "encoder", TEXTS[i % 2], "", 0, False, "", progress=lambda *a, **k: None)
        if i:  # the first round imports bertviz and warms the caches
            times.append(time.perf_counter() - start)
    data = out.data
    assert data.n_tokens == 64, data.n_tokens
    from models.attention.capture import decoder_attention, encoder_attention

    encoder = registry.encoder_with_attention()
    forward, views = [], []
    for i in range(ROUNDS):
        start = time.perf_counter()
        encoder_attention(encoder, TEXTS[i % 2])
        forward.append(time.perf_counter() - start)
        start = time.perf_counter()
        views_html(data, view_layers("", data.n_layers))
        views.append(time.perf_counter() - start)

    lm = registry.chat_model(attn_implementation="eager")
    decoder = decoder_attention(lm, " ".join(["word"] * 64), max_tokens=64)
    return {
        "server_s": statistics.median(times),
        "forward_s": statistics.median(forward),
        "views_html_s": statistics.median(views),
        "payload_bytes_minilm_64": len(views_html(data, view_layers("", data.n_layers)).encode()),
        "payload_bytes_smollm2_64": len(views_html(decoder, view_layers("", decoder.n_layers)).encode()),
    }


def iframe_render_seconds(registry) -> float | None:
    if not Path(CHROMIUM).exists():
        return None
    from playwright.sync_api import sync_playwright

    from models.attention.capture import encoder_attention
    from tabs.bertviz_views import views_document

    att, tokens, b_start, _ = encoder_attention(registry.encoder_with_attention(), TEXTS[0]).for_views()
    document = views_document(att, tokens, b_start)
    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.route("**/*", lambda route: route.abort())  # the page must need nothing from outside
        for i in range(ROUNDS + 1):
            start = time.perf_counter()
            page.set_content(document)
            page.locator("[id='attn_background_5_11']").wait_for(timeout=120_000)
            if i:
                times.append(time.perf_counter() - start)
        browser.close()
    return statistics.median(times)


def browser_seconds(settings, registry) -> tuple[float | None, float | None]:
    """(click to the head view drawn, click to both views drawn), medians."""
    if not Path(CHROMIUM).exists():
        return None, None
    from playwright.sync_api import sync_playwright

    from app import build_demo

    demo = build_demo(settings, registry)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
                ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")) else route.abort())
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Attention visualizer").click()
            times = []
            for i in range(ROUNDS + 1):
                page.locator("#attention-text textarea").fill(TEXTS[i % 2])
                marker = TEXTS[i % 2].split()[0]  # "transformers" / "rivers": the first word differs
                start = time.perf_counter()
                page.locator("#attention-show").click()
                frame = page.frame_locator("iframe.bertviz-frame")
                # the new page's head view shows the new first word, then both SVGs are drawn
                frame.locator(f"svg text:text-is('{marker}')").first.wait_for(timeout=120_000)
                head = time.perf_counter() - start
                # bertviz draws the model view in one synchronous pass: its last thumbnail is the end
                frame.locator("[id='attn_background_5_11']").wait_for(timeout=120_000)
                if i:  # round 0 warms the browser and the server
                    times.append((head, time.perf_counter() - start))
            browser.close()
    finally:
        demo.close()
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def main() -> dict:
    import torch


    settings, registry = offline_registry()
    tokenizer = registry.encoder_with_attention().tokenizer
    registry.chat_model(attn_implementation="eager")
    TEXTS[:] = [sixty_four(tokenizer, p) for p in PARAGRAPHS]
    figures = server_figures(registry)
    figures["iframe_render_s"] = iframe_render_seconds(registry)
    figures["click_to_head_view_s"], figures["click_to_rendered_s"] = browser_seconds(settings, registry)
    figures["load_average_1min"] = os.getloadavg()[0]
    figures["torch_threads"] = torch.get_num_threads()
    figures["goal_click_to_rendered_s"] = 2.0
    figures["goal_payload_bytes"] = 2_000_000
    figures["payload_ratio_to_goal"] = figures["payload_bytes_minilm_64"] / 2_000_000
    return figures


if __name__ == "__main__":
    for name, value in main().items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")

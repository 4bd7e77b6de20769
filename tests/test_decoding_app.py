"""The Decoding playground inside the running app: the API endpoints and a real browser run."""

from __future__ import annotations

import pytest
import torch
from conftest import readme_screenshot, screenshot
from gradio_client.exceptions import AppError

from models.decoding.steps import DecodeConfig, encode_prompt, generate_text

PROMPT = "The three primary colours are"
# strategy, temperature, top_k, top_p, min_p, typical_p, repetition_penalty, no_repeat_ngram_size,
# max_new_tokens, seed, num_beams, length_penalty, num_return_sequences, penalty_alpha, contrastive_k, chat
SAMPLING_VALUES = ["sampling", 0.8, 50, 0.9, 0.0, 1.0, 1.0, 0, 5, 3, 4, 1.0, 1, 0.6, 4, False]


def test_decode_endpoint_returns_text_without_special_tokens(client, registry):
    # A chat answer that ends its turn: the steps show <|im_end|>, the API text does not.
    text = client.predict("Say hi.", strategy="greedy", max_new_tokens=40, chat_template=True, api_name="/decode")
    specials = registry.chat_model().tokenizer.all_special_tokens
    assert text.strip() and not any(token in text for token in specials)


def test_decode_endpoint_greedy_equals_generate(client, registry):
    text = client.predict(PROMPT, strategy="greedy", max_new_tokens=6, chat_template=False, api_name="/decode")
    lm = registry.chat_model()
    ids = encode_prompt(lm.tokenizer, PROMPT, False)
    with torch.inference_mode():
        ref = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=6, pad_token_id=lm.tokenizer.eos_token_id)
    assert text == lm.tokenizer.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)
    # temperature 0 is explained and mapped to greedy, not an error
    assert client.predict(PROMPT, strategy="sampling", temperature=0.0, max_new_tokens=6, chat_template=False,
                          api_name="/decode") == text


def test_decode_endpoint_passes_every_setting_by_name(client, registry):
    """/decode with distinct settings gives the text of the same DecodeConfig run in-process."""
    settings = dict(strategy="sampling", temperature=1.3, top_k=30, top_p=0.9, min_p=0.05, typical_p=0.95,
                    repetition_penalty=1.2, no_repeat_ngram_size=2, max_new_tokens=8, seed=17, chat_template=False)
    text = client.predict(PROMPT, **settings, api_name="/decode")
    assert text == generate_text(registry.chat_model(), PROMPT, DecodeConfig(**settings))[0]


def test_decode_endpoint_same_seed_same_text(client):
    kwargs = dict(strategy="sampling", temperature=1.3, top_k=0, max_new_tokens=6, seed=21, chat_template=False,
                  api_name="/decode")
    assert client.predict(PROMPT, **kwargs) == client.predict(PROMPT, **kwargs)


def test_generate_listener_fills_the_inspector(client):
    out = client.predict(PROMPT, *SAMPLING_VALUES, api_name="/decoding_generate")
    tokens, notes, status, state, picker, beams, code, summary, stages, candidates, strip, contrast = (
        out if len(out) == 12 else (*out[:3], None, *out[3:]))
    assert 1 <= len(tokens) <= 5 and all(t["class_or_confidence"] for t in tokens)
    assert "tokens in" in status
    assert "do_sample=True" in code and "top_p=0.9" in code
    assert summary.startswith("**Step 1**") and "u =" in summary
    names = [row[0] for row in stages["data"]]
    assert names == ["raw softmax", "temperature 0.8", "top-k 50", "top-p 0.9"]
    assert stages["data"][2][1] == 50  # top-k leaves 50 tokens
    assert sum(row[0] == "▶" for row in candidates["data"]) == 1
    assert strip["type"] == "matplotlib"


# The label each DecodeConfig field's control has (its text before any " ("), as the page shows it.
FIELD_LABELS = {"strategy": "Strategy", "temperature": "Temperature", "top_k": "Top-k", "top_p": "Top-p",
                "min_p": "Min-p", "typical_p": "Typical-p", "repetition_penalty": "Repetition penalty",
                "no_repeat_ngram_size": "No-repeat n-gram size", "max_new_tokens": "Max new tokens", "seed": "Seed",
                "num_beams": "Beams", "length_penalty": "Length penalty", "num_return_sequences": "Beams returned",
                "penalty_alpha": "Penalty α", "contrastive_k": "Candidates",
                "chat_template": "Wrap in the chat template"}


def _params(client, api_name: str) -> list[dict]:
    """An endpoint's parameters, the page's own listeners included (view_api lists only the public API)."""
    import httpx

    info = httpx.get(f"{client.src.rstrip('/')}/gradio_api/info", params={"all_endpoints": "true"}, timeout=60)
    return info.json()["named_endpoints"][api_name]["parameters"]


def _by_name(client, api_name: str, *args, **values):
    """client.predict by parameter name for a listener off the API page (gradio_client only knows the
    public endpoints' names): every parameter in order, at its default unless given."""
    params = _params(client, api_name)[len(args):]
    ordered = [values.pop(p["parameter_name"], p.get("parameter_default")) for p in params]
    assert not values, f"not parameters of {api_name}: {list(values)}"
    return client.predict(*args, *ordered, api_name=api_name)


@pytest.mark.parametrize("api_name", ["/decoding_generate", "/decoding_compare", "/decoding_preset_generate"])
def test_each_config_field_is_wired_to_its_own_control(client, api_name):
    """The form reaches DecodeConfig by name: each field's parameter is the control labelled for it,
    with that field's default (a swap of two sliders in the wiring fails here)."""
    defaults = DecodeConfig()
    params = {p["parameter_name"]: p for p in _params(client, api_name)}
    assert list(params)[-len(FIELD_LABELS):] == list(FIELD_LABELS)  # positional order = DecodeConfig's fields
    for field, label in FIELD_LABELS.items():
        assert params[field]["label"].split(" (")[0] == label, field
        assert params[field]["parameter_default"] == getattr(defaults, field), field


def test_decode_endpoint_signature_is_the_config(client):
    """/decode keeps its keywords and defaults, which are DecodeConfig's fields and defaults."""
    params = _params(client, "/decode")
    assert [p["parameter_name"] for p in params] == ["prompt", *FIELD_LABELS]
    defaults = DecodeConfig()
    assert all(p["parameter_default"] == getattr(defaults, p["parameter_name"]) for p in params[1:])


def _code_and_stages(out) -> tuple[str, list[str]]:
    """The snippet and the stage names of a generate result (counted from the end: the state may be left out)."""
    code, stages = out[-6], out[-4]
    return code, [row[0] for row in (stages or {}).get("data", [])]


def test_every_control_value_reaches_its_field(client):
    """Distinct values sent by field name come back under that name in the snippet and the stage table
    (the handler builds its DecodeConfig by name; the test above checks the controls behind the names)."""
    out = _by_name(client, "/decoding_generate", PROMPT, strategy="sampling", temperature=0.8, top_k=37, top_p=0.93,
                   min_p=0.01, typical_p=0.97, repetition_penalty=1.15, no_repeat_ngram_size=3, max_new_tokens=2,
                   seed=5, chat_template=False)
    code, stages = _code_and_stages(out)
    assert stages == ["raw softmax", "repetition penalty 1.15", "no-repeat 3-gram", "temperature 0.8", "top-k 37",
                      "top-p 0.93", "min-p 0.01", "typical-p 0.97"]
    for part in ("max_new_tokens=2,", "torch.manual_seed(5)", "inputs = tokenizer(prompt"):
        assert part in code
    out = _by_name(client, "/decoding_generate", PROMPT, strategy="beam search", num_beams=3, length_penalty=0.7,
                   num_return_sequences=2, max_new_tokens=2, chat_template=False)
    code, _ = _code_and_stages(out)
    for part in ("num_beams=3,", "length_penalty=0.7,", "num_return_sequences=2,"):
        assert part in code
    out = _by_name(client, "/decoding_generate", PROMPT, strategy="contrastive search", penalty_alpha=0.45,
                   contrastive_k=6, max_new_tokens=2, chat_template=False)
    code, _ = _code_and_stages(out)
    assert "penalty_alpha=0.45," in code and "top_k=6," in code


def test_empty_prompt_is_a_clear_error(client):
    with pytest.raises(AppError, match="Type a prompt"):
        client.predict("   ", *SAMPLING_VALUES, api_name="/decoding_generate")
    with pytest.raises(AppError, match="up to 4,000"):
        client.predict("word " * 20_000, api_name="/decode")
    with pytest.raises(AppError, match="between 2 and 4"):
        client.predict(PROMPT, ["Greedy"], *SAMPLING_VALUES, api_name="/decoding_compare")


def test_compare_and_preset_and_chart(client):
    out = client.predict(PROMPT, ["Greedy", "Beam search (4 beams)"], *SAMPLING_VALUES, api_name="/decoding_compare")
    first, second = out[0], out[1]
    assert first["label"] == "Greedy" and first["value"] and second["label"].startswith("Beam")
    assert out[2]["visible"] is False
    preset = client.predict("Top-p tames it", api_name="/decoding_preset")
    assert preset[0].startswith("The best thing") and preset[1] == "sampling" and preset[4] == 0.3
    chart = client.predict(PROMPT, False, 0.7, 0.9, api_name="/decoding_temperature_chart")
    assert chart["type"] == "matplotlib"


@pytest.mark.browser
def test_browser_slider_generate_open_step(page):
    page.get_by_role("tab", name="Decoding playground").click()
    page.locator("#decoding-max-new input[type=number]").fill("16")
    page.locator("#decoding-max-new input[type=number]").press("Enter")
    page.locator("#decoding-seed input").fill("3")
    slider = page.locator("#decoding-temperature input[type=range]")
    slider.focus()
    for _ in range(4):  # move the slider with the keyboard: 1.0 -> 0.8
        slider.press("ArrowLeft")
    assert page.locator("#decoding-temperature input[type=number]").input_value() == "0.8"
    page.locator("#decoding-generate").click()
    page.wait_for_selector("#decoding-status :text('tokens in')", timeout=120_000)
    tokens = page.locator("#decoding-output .token")
    assert tokens.count() >= 2
    tokens.nth(2).click()
    page.wait_for_selector("#decoding-summary :text('Step 3')", timeout=60_000)
    assert "temperature 0.8" in page.locator("body").inner_text()
    page.wait_for_timeout(500)  # let the strip chart image paint before the screenshot
    readme_screenshot(page, "decoding")  # assets/screenshots/decoding.png when missing
    assert not page.blocked_requests, page.blocked_requests


@pytest.mark.browser
def test_browser_preset_beams_and_compare(page):
    page.get_by_role("tab", name="Decoding playground").click()
    page.get_by_label("Top-p tames it", exact=True).check()  # a one-click example: fills the form, then runs
    page.wait_for_selector("#decoding-status :text('tokens in')", timeout=180_000)
    assert page.locator("#decoding-temperature input[type=number]").input_value() == "2"
    assert "top-p 0.3" in page.locator("body").inner_text()
    page.locator("#decoding-max-new input[type=number]").fill("6")
    page.locator("#decoding-max-new input[type=number]").press("Enter")
    page.get_by_label("beam search", exact=True).check()
    page.locator("#decoding-generate").click()
    page.wait_for_selector("#decoding-status :text('beams: ')", timeout=120_000)  # "… 4 beams: N tokens in …"
    page.get_by_role("tab", name="Beams").click()
    page.get_by_text("cumulative log-prob").first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Compare").click()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_selector("#decoding-compare-2 .token", timeout=180_000)  # the third column is filled
    screenshot(page, "decoding_compare")

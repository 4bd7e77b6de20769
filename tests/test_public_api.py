"""The public API is the documented one: the app's "Use via API" page and the README's API section
list the same endpoints, and the UI's plumbing is neither listed nor callable by gradio_client."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def readme_endpoints() -> set[str]:
    """The api_names the README's "## API" section calls, e.g. {"/qna_answer", "/decode", ...}."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## API\n(.*?)^## ", text, re.S | re.M)
    assert section, "README.md has no '## API' section"
    return set(re.findall(r'api_name="(/[\w-]+)"', section.group(1)))


@pytest.fixture(scope="module")
def public_api(client) -> dict:
    return client.view_api(return_format="dict", print_info=False)


def test_the_api_page_lists_exactly_the_readme_endpoints(public_api):
    documented = readme_endpoints()
    listed = set(public_api["named_endpoints"])
    assert len(documented) >= 15  # the section was parsed, not an empty match
    assert not listed - documented, f"public endpoints missing from the README's API section: {listed - documented}"
    assert not documented - listed, f"README endpoints the app does not list: {documented - listed}"
    assert not public_api["unnamed_endpoints"]


def test_ui_listeners_are_hidden_and_plumbing_is_not_callable(client, public_api):
    listed = set(public_api["named_endpoints"])
    # The tabs' own handlers are off the page but gradio_client may still drive them, as the browser does.
    assert "/qna_chat" not in listed and "/decoding_generate" not in listed
    # Click and Enter are one listener, so there is one name for it.
    config_names = {d.get("api_name") for d in client.config["dependencies"]}
    assert {"qna_chat", "rag_chat", "decoding_generate"} <= config_names
    assert not {"qna_submit", "rag_chat_submit", "decoding_generate_submit"} & config_names
    for plumbing in ("/qna_clear", "/rag_compare_toggle", "/attention_model_kind", "/lesson_next"):
        with pytest.raises(ValueError, match="Cannot find a function"):
            client.predict(api_name=plumbing)


def test_every_listener_with_a_function_is_named(settings, registry):
    from app import build_demo

    demo = build_demo(settings, registry)
    unnamed = [fn.name for fn in demo.fns.values() if fn.fn is not None and not fn.api_name]
    assert not unnamed, f"listeners without api_name: {unnamed}"
    visibility = {fn.api_name: fn.api_visibility for fn in demo.fns.values() if fn.fn is not None}
    assert {name for name, v in visibility.items() if v == "public"} == {e.lstrip("/") for e in readme_endpoints()}
    assert visibility["qna_clear"] == visibility["tokens_lens_select"] == "private"
    demo.services.housekeeper.stop()

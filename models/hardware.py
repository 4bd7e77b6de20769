"""What this CPU can do for quantized models, and which kernel each scheme really ran.

Quantization only pays off when the CPU has a fast kernel for the smaller number format:
int8 dot products are fast with AVX-512 VNNI / AVX-VNNI / AMX; with plain AVX2, int8 GEMM
must widen to 16 bits and is often no faster than fp32 sgemm, so the gain comes mostly from
moving fewer bytes during decoding (which is memory-bound). We read the kernels from the
torch profiler (one forward pass) and from the ONNX graph, rather than guessing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

# Instruction sets that matter for low-precision matmuls, as /proc/cpuinfo names them.
FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
# Profiler op names that are matrix-multiply kernels (dense or quantized).
MATMUL_HINTS = ("linear", "addmm", "mm", "matmul", "int4pack", "quantized::", "gemm")


def usable_cores() -> int:
    """Cores this process may really use: the smallest of the host's cores, its CPU affinity and
    its container's CPU quota (cgroup v2 `cpu.max` or v1 `cfs_quota_us`, rounded up). A Space or
    any container may show the host's 16 cores while granting 2 vCPUs; sizing threads from the
    host would make them fight over the quota. joblib (loky) reads all three."""
    from joblib import cpu_count

    return max(1, cpu_count(only_physical_cores=False))


def intra_op_threads(settings) -> int:
    """torch threads per model job: GENAI_LAB_TORCH_THREADS, else the usable cores shared among
    the model jobs that run at once (more would make those jobs fight over the same cores)."""
    if settings.torch_threads > 0:
        return settings.torch_threads
    return max(1, usable_cores() // max(1, settings.model_concurrency))


def onnx_session_options(settings):
    """onnxruntime session options sized like torch's threads (intra_op_threads): onnxruntime's
    own default is one intra-op thread per physical core of the host, which in a container can be
    far more than its CPU quota. One inter-op thread: the graphs run sequentially."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads(settings)
    options.inter_op_num_threads = 1
    return options


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, bool]:
    try:
        words = set(cpuinfo.read_text().split())
    except OSError:
        words = set()
    return {flag: flag in words for flag in FLAGS}


def summary() -> dict:
    """The CPU capability torch dispatches to, its quantized engine, threads, relevant flags."""
    try:
        import onnxruntime as ort

        ort_info = f"{ort.__version__} ({', '.join(ort.get_available_providers())})"
    except ImportError:
        ort_info = "not installed"
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "quantized_engine": torch.backends.quantized.engine,
        "threads": torch.get_num_threads(),
        "flags": cpu_flags(),
        "onnxruntime": ort_info,
    }


def torch_kernels(model, ids: torch.Tensor, top: int = 4) -> list[tuple[str, float]]:
    """The matmul ops that took the most CPU time in one forward pass: [(op name, ms)]."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model(**ids) if isinstance(ids, dict) else model(input_ids=ids)
    times: Counter = Counter()
    for event in prof.key_averages():
        name = event.key
        if any(h in name.lower() for h in MATMUL_HINTS) and not name.startswith("aten::t"):
            times[name] += event.self_cpu_time_total / 1000.0
    return [(name, round(ms, 2)) for name, ms in times.most_common(top)]


def onnx_kernels(path: Path, top: int = 4) -> list[tuple[str, int]]:
    """The matmul-like op types in an ONNX graph and how many nodes use each."""
    import onnx

    ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    wanted = [(op, count) for op, count in ops.most_common()
              if "MatMul" in op or "Gemm" in op or "Quantize" in op or op == "Gather"]
    return wanted[:top]


def explain(info: dict) -> str:
    """A short, CPU-specific explanation of why int8/int4 is faster or slower here."""
    flags = info["flags"]
    vnni = flags.get("avx512_vnni") or flags.get("avx_vnni") or flags.get("amx_int8")
    lines = [f"torch dispatches to **{info['cpu_capability']}** kernels; quantized engine "
             f"**{info['quantized_engine']}**; {info['threads']} threads; onnxruntime {info['onnxruntime']}.",
             "CPU flags: " + ", ".join(f"{name} {'✔' if present else '✘'}" for name, present in flags.items())]
    if vnni:
        lines.append("This CPU has int8 dot-product instructions (VNNI/AMX): int8 matmuls can be "
                     "much faster than fp32, not only smaller.")
    else:
        lines.append("No AVX-512/VNNI/AMX here: an int8 matmul has to widen values to 16-bit before "
                     "multiplying, so it is roughly as fast as fp32 math. int8 can still win while "
                     "*decoding* one token at a time, because that step is limited by reading "
                     "weights from memory and int8 weights are 4x fewer bytes — when the cores are "
                     "not busy with other work. Compare the measured speed-up with the noise floor.")
    if not flags.get("avx512_bf16") and not flags.get("amx_bf16"):
        lines.append("No native bf16 math: the int4 scheme runs its activations in bf16, which is "
                     "emulated, so a long prompt (prefill) is slower than fp32 even though each "
                     "decoded token reads 8x fewer weight bytes.")
    lines.append("Embeddings are looked up, not multiplied, so Linear-only schemes leave them in "
                 "full precision; onnxruntime also quantizes the embedding lookup (Gather).")
    return "\n\n".join(lines)

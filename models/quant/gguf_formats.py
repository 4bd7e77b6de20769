"""llama.cpp's GGUF weight formats, as the `gguf` package implements them: layout, bits, round trip.

`gguf.quants.quantize` turns float32 rows into the exact bytes a GGUF file stores, block by block,
and `gguf.quants.dequantize` turns them back (NumPy ports of ggml's reference code; Q8_0 is
bit-exact with it). Nothing here re-implements a format. What this module adds is what the
package leaves to its caller:

- which formats the ladder shows, with a sentence on what each block holds;
- bits per weight, read from the block layout (`GGML_QUANT_SIZES`: bytes per block of N weights);
- the row rule: a tensor row must be a whole number of blocks. SmolLM2's rows are 576 (or 1536)
  wide and MiniLM's 384 (or 1536); 576 and 384 are multiples of 32 but not of 256, so the
  ternary formats (blocks of 256) cannot hold them. llama.cpp's `llama-quantize` then stores
  that tensor as Q4_0 (its `tensor_type_fallback`), and so does the ladder: `storage_format`
  says which format a row of a given width really gets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf import quants as gguf_quants


@dataclass(frozen=True)
class Format:
    """One GGUF tensor type: its name, what a block stores, and its size."""

    name: str
    summary: str

    @property
    def qtype(self) -> GGMLQuantizationType:
        return GGMLQuantizationType[self.name]

    @property
    def block_size(self) -> int:
        """Weights per block."""
        return GGML_QUANT_SIZES[self.qtype][0]

    @property
    def type_size(self) -> int:
        """Bytes per block."""
        return GGML_QUANT_SIZES[self.qtype][1]

    @property
    def bits_per_weight(self) -> float:
        return self.type_size * 8 / self.block_size

    def fits(self, row_width: int) -> bool:
        return row_width % self.block_size == 0


# The ladder, finest first. Summaries describe the block layouts in ggml-common.h.
LADDER: tuple[Format, ...] = (
    Format("BF16", "bfloat16: fp32 with the low 16 mantissa bits dropped (8 exponent, 7 mantissa bits)"),
    Format("Q8_0", "blocks of 32 int8 values with one fp16 scale"),
    Format("Q5_1", "blocks of 32 5-bit values with an fp16 scale and an fp16 minimum"),
    Format("Q5_0", "blocks of 32 5-bit values with one fp16 scale"),
    Format("Q4_1", "blocks of 32 4-bit values with an fp16 scale and an fp16 minimum"),
    Format("Q4_0", "blocks of 32 4-bit values with one fp16 scale"),
    Format("MXFP4", "blocks of 32 4-bit floats (e2m1) sharing one power-of-two scale (OCP microscaling)"),
    Format("TQ2_0", "ternary {-1, 0, 1} x one fp16 scale per 256 weights, 2 bits each"),
    Format("TQ1_0", "the same ternary values as TQ2_0, packed 5 per byte (1.6875 bits each)"),
)
FORMATS: dict[str, Format] = {f.name: f for f in LADDER}
Q8_0, Q4_0 = FORMATS["Q8_0"], FORMATS["Q4_0"]
F32 = Format("F32", "float32, as stored for norms and biases")
F16 = Format("F16", "float16")
# llama.cpp's tensor_type_fallback for a row that is not a whole number of 256-blocks.
FALLBACK = {"TQ1_0": Q4_0, "TQ2_0": Q4_0}


def format_named(name: str) -> Format:
    """The ladder format called `name` (case-insensitive); ValueError names the choices."""
    key = str(name).strip().upper()
    if key not in FORMATS:
        raise ValueError(f"Unknown GGUF format; choose from {', '.join(FORMATS)}.")  # never echo input
    return FORMATS[key]


def storage_format(fmt: Format, row_width: int) -> Format:
    """The format a row of `row_width` weights is really stored in: `fmt`, or llama.cpp's fallback
    (then F16 when even that does not fit, as llama-quantize does)."""
    if fmt.fits(row_width):
        return fmt
    fallback = FALLBACK.get(fmt.name, F16)
    return fallback if fallback.fits(row_width) else F16


def stored_bytes(shape: tuple[int, ...], fmt: Format) -> int:
    """Bytes of a tensor of this shape in a GGUF file, for F32/F16 or a block format that fits."""
    count = int(np.prod(shape))
    if fmt in (F32, F16):
        return count * (4 if fmt is F32 else 2)
    if not fmt.fits(shape[-1]):
        raise ValueError(f"rows of {shape[-1]} are not a whole number of {fmt.name} blocks")
    return count // fmt.block_size * fmt.type_size


def quantize(weights: np.ndarray, fmt: Format) -> np.ndarray:
    """The bytes `fmt` stores for float32 weights [rows, width] (uint8 [rows, width/block*bytes])."""
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    if fmt is F16:
        return weights.astype(np.float16).view(np.uint8)
    return gguf_quants.quantize(weights, fmt.qtype)


def dequantize(packed: np.ndarray, fmt: Format) -> np.ndarray:
    """float32 weights back from the stored bytes."""
    if fmt is F16:
        return packed.view(np.float16).astype(np.float32)
    return gguf_quants.dequantize(packed, fmt.qtype)


def round_trip(weights: np.ndarray, fmt: Format) -> np.ndarray:
    """Fake quantization: the float32 values a GGUF reader gets back after storing `weights`."""
    return dequantize(quantize(weights, fmt), fmt)

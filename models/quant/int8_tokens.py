"""int8 that stays close to float32 on SmolLM2: per-token activation scales, massive-activation layers kept.

torch.ao's dynamic int8 Linear (fbgemm / oneDNN) rounds weights to int8 per output channel, and
rounds the *activations* on the fly with one scale per call, over the whole [tokens, features]
input, in 7 bits (`reduce_range`, which keeps AVX2's 16-bit accumulators from overflowing).
SmolLM2, like most LLMs, puts "massive activations" (values in the thousands) on its first
token in a few MLP down-projections; scored over a whole text in one pass, that one token sets
the scale for every token, and the others' values (around 1) round to zero. That, not 8-bit
weights, is what makes the naive scheme lose so much.

Two changes, no new kernel:
1. Per-token scales. Before the int8 call each row x is centred and scaled to [-1, 1]:
   x = s·x' + c, so W·x = s·(W·x') + c·(W·1) exactly; the kernel's per-call scale then fits every
   row, and the result is rescaled. A single row (decoding one token) skips this: its per-call
   scale already is per-token. So decoding speed is the naive scheme's; only prefill pays a few
   elementwise operations.
2. The Linear layers whose input, on a fixed calibration prompt (not the tab's reference text),
   holds a massive activation (|x| > MASSIVE) stay float32: in SmolLM2, two MLP down-projections.
"""

from __future__ import annotations

import copy
import warnings

import torch

from models.chat import encode_chat, user_message

MASSIVE = 1000.0  # "massive activations" (Sun et al., 2024): magnitudes in the thousands, on a few tokens
CALIBRATION_PROMPT = "Give me three tips for a good night's sleep."


class PerTokenInt8Linear(torch.nn.Module):
    """A torch.ao dynamic int8 Linear fed one row at a time in effect (see the module docstring)."""

    def __init__(self, quantized: torch.nn.Module, bias: torch.Tensor | None):
        super().__init__()
        self.quantized = quantized  # built without bias: the bias is added after rescaling
        self.register_buffer("row_sums", quantized.weight().dequantize().sum(-1))  # W·1, int8 weights
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == x.shape[-1]:  # one token: the per-call scale is already per-token
            y = self.quantized(x)
        else:
            high, low = x.amax(-1, keepdim=True), x.amin(-1, keepdim=True)
            centre, half = (high + low) / 2, ((high - low) / 2).clamp_min(1e-8)
            y = self.quantized((x - centre) / half) * half + centre * self.row_sums
        return y if self.bias is None else y + self.bias


def massive_inputs(model: torch.nn.Module, tokenizer) -> list[str]:
    """Names of the Linear layers whose input holds |x| > MASSIVE on the calibration prompt."""
    peaks: dict[str, float] = {}
    hooks = [module.register_forward_pre_hook(
        lambda mod, args, name=name: peaks.__setitem__(name, float(args[0].abs().max())))
        for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([encode_chat(tokenizer, user_message(CALIBRATION_PROMPT))]))
    finally:
        for hook in hooks:
            hook.remove()
    return sorted(name for name, peak in peaks.items() if peak > MASSIVE)


def quantize_per_token(model: torch.nn.Module, tokenizer) -> tuple[torch.nn.Module, list[str]]:
    """A copy of the causal LM with per-token int8 Linear layers, and the layers kept float32."""
    model = copy.deepcopy(model)  # calibrate the copy: hooks on the shared model would see other requests
    kept = massive_inputs(model, tokenizer)
    chosen = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n not in kept]
    biases = {}
    for name in chosen:
        linear = model.get_submodule(name)
        biases[name], linear.bias = linear.bias, None
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated; it still works
        warnings.simplefilter("ignore")
        spec = dict.fromkeys(chosen, torch.ao.quantization.per_channel_dynamic_qconfig)
        torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    for name in chosen:
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, PerTokenInt8Linear(getattr(holder, child), biases[name]))
    return model.eval(), kept

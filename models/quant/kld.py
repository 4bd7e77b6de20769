"""llama.cpp's `perplexity --kl-divergence` statistics, from two models' logits on the same tokens.

Definitions follow tools/perplexity/perplexity.cpp (llama.cpp), position by position, where
logits[t] predict the reference token ids[t+1]:
- KL    = KL(P_base || P_quant) of the two next-token distributions (nats);
- Δp    = p_quant(reference token) - p_base(reference token), so a negative mean means the
          quantized model is less sure of the text (llama.cpp's sign);
- same top p = share of positions where both models rank the same token first;
- percentiles interpolate linearly between sorted values (llama.cpp's `percentile` lambda, which
  is also torch.quantile's default), and the ± of a mean is its standard error.
Two differences, both stated in the tab: llama.cpp scores the second half of each n_ctx window
of a long text, we score every position of one short text; and llama.cpp stores the base
log-probabilities in 16 bits and skips terms below e^-16, we keep float32 throughout.
"""

from __future__ import annotations

import math

import torch


def _mean_and_error(values: torch.Tensor) -> tuple[float, float]:
    n = values.numel()
    mean = float(values.double().mean())
    return mean, float(values.double().std() / math.sqrt(n - 1)) if n > 2 else 0.0


def _pct(values: torch.Tensor, fraction: float) -> float:
    return float(torch.quantile(values.double(), fraction))


def kld_report(base_logits: torch.Tensor, other_logits: torch.Tensor, ids: torch.Tensor) -> dict:
    """Perplexity, KL and Δp statistics of `other` against `base` ([T, V] logits, [T] token ids)."""
    base_lp = torch.log_softmax(base_logits[:-1].float(), dim=-1)
    other_lp = torch.log_softmax(other_logits[:-1].float(), dim=-1)
    target = ids[1:].unsqueeze(-1)
    kl = (base_lp.exp() * (base_lp - other_lp)).sum(-1)
    nll, nll_base = -other_lp.gather(-1, target).squeeze(-1), -base_lp.gather(-1, target).squeeze(-1)
    dp = torch.exp(-nll) - torch.exp(-nll_base)
    mean_kl, mean_kl_error = _mean_and_error(kl)
    dp_mean, dp_error = _mean_and_error(dp)
    same = float((base_lp.argmax(-1) == other_lp.argmax(-1)).double().mean())
    return {
        "perplexity": math.exp(float(nll.double().mean())),
        "perplexity_base": math.exp(float(nll_base.double().mean())),
        "mean_kl": mean_kl, "mean_kl_error": mean_kl_error,
        "kl_median": _pct(kl, 0.5), "kl_p90": _pct(kl, 0.90), "kl_p99": _pct(kl, 0.99),
        "kl_max": float(kl.max()),
        "dp_mean_pct": 100 * dp_mean, "dp_mean_error_pct": 100 * dp_error,
        "dp_rms_pct": 100 * math.sqrt(float((dp.double() ** 2).mean())),
        "dp_p1_pct": 100 * _pct(dp, 0.01), "dp_p99_pct": 100 * _pct(dp, 0.99),
        "same_top1_pct": 100 * same,
        "positions": int(kl.numel()),
    }

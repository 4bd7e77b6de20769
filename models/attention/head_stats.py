"""What each head does, in numbers: one score per (layer, head) for a handful of known patterns.

For every head (averaged over the query tokens):
- entropy: how spread out a row is, in bits (0 = all on one token);
- previous: weight on the token just before (rows 1..n-1);
- self: weight on the token itself;
- first: weight on the first token ([CLS], or a decoder's first token: the "attention sink");
- sep: weight on [SEP] tokens (encoders; NaN when the input has none).
`head_types` names each head's dominant pattern, for a coloured grid students can scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRICS = ("entropy", "previous", "self", "first", "sep")
# A head is called by a pattern when at least this share of its attention follows it.
DOMINANT = 0.5
TYPE_LABELS = {  # every pattern `head_types` can name, in a student's words
    "previous": "previous token", "self": "itself", "first": "first token / [CLS] (sink)",
    "sep": "[SEP]", "broad": "broad (high entropy)", "mixed": "mixed",
}


@dataclass
class HeadStats:
    """`scores[metric]` is a (layers, heads) array."""

    scores: dict[str, np.ndarray]
    n_tokens: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.scores["entropy"].shape

    def rows(self) -> list[dict]:
        """One dict per head, for a table (NaN -> None)."""
        layers, heads = self.shape
        types = head_types(self)
        out = []
        for layer in range(layers):
            for head in range(heads):
                row = {"layer": layer, "head": head, "type": types[layer][head]}
                for metric in METRICS:
                    value = float(self.scores[metric][layer, head])
                    row[metric] = None if np.isnan(value) else round(value, 3)
                out.append(row)
        return out


def head_stats(attentions: np.ndarray, sep_positions: list[int] | None = None) -> HeadStats:
    """Scores of every head from `attentions[layer, head, query, key]`."""
    att = attentions.astype(np.float64)
    n = att.shape[-1]
    logs = np.log2(np.where(att > 0, att, 1.0))  # 0·log 0 = 0 (masked future tokens)
    entropy = -(att * logs).sum(-1).mean(-1)
    diag = np.diagonal(att, axis1=-2, axis2=-1)
    self_score = diag.mean(-1)
    previous = np.diagonal(att, offset=-1, axis1=-2, axis2=-1).mean(-1) if n > 1 else np.zeros(att.shape[:2])
    first = att[..., :, 0].mean(-1)
    if sep_positions:
        sep = att[..., :, sep_positions].sum(-1).mean(-1)
    else:
        sep = np.full(att.shape[:2], np.nan)
    scores = {"entropy": entropy, "previous": previous, "self": self_score, "first": first, "sep": sep}
    return HeadStats(scores=scores, n_tokens=n)


def head_types(stats: HeadStats) -> list[list[str]]:
    """Each head's dominant pattern ("previous", "self", "first", "sep", "broad" or "mixed")."""
    layers, heads = stats.shape
    # "broad": entropy above 70% of the most a uniform row could have (averaged over rows
    # whose length grows for a decoder, the uniform bound is roughly log2(n) anyway).
    broad_at = 0.7 * np.log2(max(stats.n_tokens, 2))
    kinds = ("previous", "self", "first", "sep")
    out = []
    for layer in range(layers):
        row = []
        for head in range(heads):
            values = {k: stats.scores[k][layer, head] for k in kinds}
            values = {k: v for k, v in values.items() if not np.isnan(v)}
            best = max(values, key=values.get)
            if values[best] >= DOMINANT:
                row.append(best)
            elif stats.scores["entropy"][layer, head] >= broad_at:
                row.append("broad")
            else:
                row.append("mixed")
        out.append(row)
    return out

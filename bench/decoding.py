"""Benchmark: what the step inspector's recording costs, against plain `model.generate()`.

For greedy and for sampling (temperature, top-k, top-p and a repetition penalty, so every
stage runs), the playground's loop (KV cache, every stage's softmax recorded, candidates,
strip) and `model.generate()` with the same settings (`generate_kwargs`) run alternately on
the same raw prompt, 40 new tokens, models already loaded. Figures are per generated token
(sampled runs may stop at different lengths). The ratio uses the fastest of ROUNDS alternating
runs of each side (the least disturbed by other processes on a shared machine); the medians
are reported too. Goal: ratio <= 1.3.
"""

from __future__ import annotations

import os
import statistics
import time

from bench.in_process import offline_registry

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROUNDS = 5
PROMPT = "Once upon a time, in a village by the sea,"
NEW_TOKENS = 40


def _per_token(fn) -> float:
    start = time.perf_counter()
    n = fn()
    return (time.perf_counter() - start) / max(n, 1)


def main() -> dict:
    import torch

    from models.decoding.code import generate_kwargs
    from models.decoding.steps import GREEDY, SAMPLING, DecodeConfig, encode_prompt, normalize, stream_steps

    lm = offline_registry()[1].chat_model()
    ids = encode_prompt(lm.tokenizer, PROMPT, False)
    figures: dict = {"threads": torch.get_num_threads(), "new_tokens": NEW_TOKENS}
    configs = {
        "greedy": DecodeConfig(strategy=GREEDY, max_new_tokens=NEW_TOKENS, chat_template=False),
        "sampling": DecodeConfig(strategy=SAMPLING, temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1,
                                 max_new_tokens=NEW_TOKENS, seed=1, chat_template=False),
    }
    for name, cfg in configs.items():
        cfg, _ = normalize(cfg)
        kwargs = generate_kwargs(cfg)

        def recorded(cfg=cfg):
            return len(list(stream_steps(lm, PROMPT, cfg)))

        def plain(cfg=cfg, kwargs=kwargs):
            torch.manual_seed(cfg.seed)
            with torch.inference_mode():
                out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                        pad_token_id=lm.tokenizer.eos_token_id, **kwargs)
            return out.shape[1] - ids.shape[1]

        recorded(), plain()  # warm-up
        rec, gen = [], []
        for _ in range(ROUNDS):  # alternate, so load changes hit both sides alike
            rec.append(_per_token(recorded))
            gen.append(_per_token(plain))
        figures[f"{name}_recorded_ms_per_token"] = round(1000 * min(rec), 2)
        figures[f"{name}_generate_ms_per_token"] = round(1000 * min(gen), 2)
        figures[f"{name}_ratio"] = round(min(rec) / min(gen), 3)
        figures[f"{name}_ratio_of_medians"] = round(statistics.median(rec) / statistics.median(gen), 3)
    figures["goal_ratio_max"] = 1.3
    figures["meets_goal"] = all(figures[f"{n}_ratio"] <= 1.3 for n in configs)
    return figures


if __name__ == "__main__":
    print(main())

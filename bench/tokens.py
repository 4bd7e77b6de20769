"""Benchmark: the "From text to numbers" tab's two model calls.

- Logit lens on a 64-token prompt: one forward pass with `output_hidden_states=True`, then every
  layer's states through the final norm and the output head, against the plain forward pass
  (`model(input_ids)`, which already computes the logits of every position). Run alternately,
  ROUNDS times each; the ratio uses the fastest of each (the least disturbed on a shared
  machine), the medians are reported too. Goals: <= 1 s, ratio <= 1.5.
  Also measured: the projection alone (every layer's states through the norm and head, nothing
  read from the logits), the floor of any exact lens; and the same floor in arithmetic: the
  multiply-adds of forward + lens over those of the forward.
- Embedding map of 50 sentences (MiniLM embeddings, PCA, similarity matrix). Goal: <= 2 s.

Models are loaded before timing, at the app's thread count. On a machine shared with other
busy processes, wall-clock figures wait for the cores; the CPU seconds this process used (the
`_cpu_` figures, summed over its threads) are the steadier measure of the work itself.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from bench.in_process import offline_registry

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROUNDS = 5
LENS_TOKENS = 64
MAP_TEXTS = 50
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _seconds(fn) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _prompt(tokenizer) -> str:
    """The bundled reference text cut to exactly LENS_TOKENS tokens."""
    text = (ASSETS / "eval" / "reference.txt").read_text(encoding="utf-8")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:LENS_TOKENS]
    return tokenizer.decode(ids)


def _sentences() -> list[str]:
    from models.similarity import split_sentences

    eval_set = json.loads((ASSETS / "eval" / "encoder_sentences.json").read_text(encoding="utf-8"))
    reference = split_sentences((ASSETS / "eval" / "reference.txt").read_text(encoding="utf-8"))
    sentences = list(dict.fromkeys(eval_set["sentences"] + eval_set["queries"] + reference))
    return sentences[:MAP_TEXTS]


def main() -> dict:
    import torch

    from models.tokens.logit_lens import logit_lens, prompt_ids
    from models.tokens.sentence_map import sentence_map

    settings, registry = offline_registry()
    lm, encoder = registry.chat_model(), registry.sentence_encoder()
    prompt = _prompt(lm.tokenizer)
    ids, _ = prompt_ids(lm.tokenizer, prompt, as_chat=False)
    input_ids = torch.tensor([ids])

    def plain():
        with torch.inference_mode():
            lm.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))

    def lens():
        logit_lens(lm, prompt, as_chat=False, top_k=5)

    with torch.inference_mode():
        states = lm.model(input_ids=input_ids, output_hidden_states=True).hidden_states[:-1]
    decoder, head = lm.model.model, lm.model.get_output_embeddings()

    def projection_only():
        with torch.inference_mode():
            for h in states:
                head(decoder.norm(h[0]))

    sentences = _sentences()

    def embedding_map():
        sentence_map(encoder, sentences, dims=3)

    plain(), lens(), projection_only(), embedding_map()  # warm-up
    runs = {name: [] for name in ("lens", "plain", "projection", "map")}
    for _ in range(ROUNDS):  # alternate, so load changes hit both sides alike
        for name, fn in (("lens", lens), ("plain", plain), ("projection", projection_only), ("map", embedding_map)):
            runs[name].append(_seconds(fn))
    lens_s, plain_s, projection_s, map_s = ([wall for wall, _ in runs[n]] for n in runs)
    lens_cpu, plain_cpu, projection_cpu, map_cpu = (min(cpu for _, cpu in runs[n]) for n in runs)
    layers = lm.model.config.num_hidden_layers
    head_params = head.weight.numel()
    body_params = sum(p.numel() for p in lm.model.parameters()) - head_params  # tied: embeddings counted once
    forward_macs = body_params + head_params  # per position (the embedding lookup costs no multiply-add)
    lens_macs = forward_macs + layers * head_params
    return {
        "threads": torch.get_num_threads(), "lens_prompt_tokens": len(ids), "layers_read": layers + 1,
        "vocabulary": lm.model.config.vocab_size,
        "forward_s": round(min(plain_s), 4), "logit_lens_s": round(min(lens_s), 4),
        "logit_lens_ratio": round(min(lens_s) / min(plain_s), 2),
        "logit_lens_ratio_of_medians": round(statistics.median(lens_s) / statistics.median(plain_s), 2),
        "forward_cpu_s": round(plain_cpu, 4), "logit_lens_cpu_s": round(lens_cpu, 4),
        "logit_lens_cpu_ratio": round(lens_cpu / plain_cpu, 2),
        "projection_only_s": round(min(projection_s), 4), "projection_only_cpu_s": round(projection_cpu, 4),
        "floor_ratio_measured_cpu": round((plain_cpu + projection_cpu) / plain_cpu, 2),
        "floor_ratio_multiply_adds": round(lens_macs / forward_macs, 2),
        "embedding_map_texts": len(sentences), "embedding_map_s": round(min(map_s), 4),
        "embedding_map_median_s": round(statistics.median(map_s), 4), "embedding_map_cpu_s": round(map_cpu, 4),
        "goals": {"logit_lens_s_max": 1.0, "logit_lens_ratio_max": 1.5, "embedding_map_s_max": 2.0},
        "meets_goal": {"logit_lens_s": min(lens_s) <= 1.0, "logit_lens_ratio": min(lens_s) / min(plain_s) <= 1.5,
                       "embedding_map_s": min(map_s) <= 2.0},
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

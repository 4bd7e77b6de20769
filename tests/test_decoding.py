"""Decoding playground adapters on the real SmolLM2: the recorded loop must be what generate() does."""

from __future__ import annotations

import threading

import pytest
import torch

from models.decoding.code import generate_kwargs, python_snippet
from models.decoding.steps import (
    BEAM,
    CONTRASTIVE,
    GREEDY,
    SAMPLING,
    DecodeConfig,
    build_stages,
    encode_prompt,
    generate_text,
    normalize,
    stream_steps,
    temperature_sweep,
)

PROMPT = "The three primary colours are"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _generate(lm, ids, cfg, **extra):
    with torch.inference_mode():
        return lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 pad_token_id=lm.tokenizer.eos_token_id, **generate_kwargs(cfg), **extra)


@pytest.mark.parametrize("chat, penalties", [(False, {}), (True, {"repetition_penalty": 1.3,
                                                                    "no_repeat_ngram_size": 2})])
def test_greedy_equals_model_generate(lm, chat, penalties):
    cfg, _ = normalize(DecodeConfig(strategy=GREEDY, max_new_tokens=8, chat_template=chat, **penalties))
    text, steps, _ = generate_text(lm, PROMPT, cfg)
    ids = encode_prompt(lm.tokenizer, PROMPT, chat)
    reference = _generate(lm, ids, cfg)[0, ids.shape[1]:].tolist()
    assert [s.token_id for s in steps] == reference
    assert text == lm.tokenizer.decode(reference, skip_special_tokens=True)


def test_same_seed_same_text_and_draws(lm):
    cfg, _ = normalize(DecodeConfig(strategy=SAMPLING, temperature=1.2, top_k=0, max_new_tokens=6, seed=11,
                                    chat_template=False))
    rng_before = torch.get_rng_state()
    first = list(stream_steps(lm, PROMPT, cfg))
    second = list(stream_steps(lm, PROMPT, cfg))
    assert torch.equal(rng_before, torch.get_rng_state())  # the global RNG is never touched
    assert [s.token_id for s in first] == [s.token_id for s in second]
    assert [s.draw for s in first] == [s.draw for s in second]
    other = list(stream_steps(lm, PROMPT, DecodeConfig(**{**cfg.__dict__, "seed": 12})))
    assert [s.draw for s in other] != [s.draw for s in first]


def test_concurrent_requests_do_not_share_randomness(lm):
    cfg, _ = normalize(DecodeConfig(strategy=SAMPLING, temperature=1.5, top_k=0, max_new_tokens=5, seed=3,
                                    chat_template=False))
    alone = [s.token_id for s in stream_steps(lm, PROMPT, cfg)]
    results = {}

    def run(key, seed):
        results[key] = [s.token_id for s in stream_steps(lm, PROMPT, DecodeConfig(**{**cfg.__dict__, "seed": seed}))]

    threads = [threading.Thread(target=run, args=(k, s)) for k, s in (("a", 3), ("b", 99))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"] == alone


def test_draw_lands_in_the_chosen_tokens_segment(lm):
    cfg, _ = normalize(DecodeConfig(strategy=SAMPLING, temperature=0.9, top_p=0.8, max_new_tokens=6, seed=5,
                                    chat_template=False))
    for step in stream_steps(lm, PROMPT, cfg):
        left = 0.0
        total = sum(p for _, _, p in step.strip)
        for token_id, _, p in step.strip:
            if token_id == step.token_id:
                break
            left += p
        assert step.draw is not None and total > 0.99  # top-p 0.8 keeps few tokens: all are in the strip
        assert left - 1e-6 <= step.draw * total <= left + step.prob + 1e-6


def test_stage_probabilities_match_generate_and_processors(lm):
    """Every stage equals transformers' processor applied to the model's logits, and the final one
    equals the scores generate() itself computes for the same prefix."""
    cfg, _ = normalize(DecodeConfig(strategy=SAMPLING, temperature=0.7, top_k=40, top_p=0.9, min_p=0.02,
                                    typical_p=0.95, repetition_penalty=1.2, no_repeat_ngram_size=2,
                                    max_new_tokens=4, seed=2, chat_template=False))
    steps = list(stream_steps(lm, PROMPT, cfg))
    ids = encode_prompt(lm.tokenizer, PROMPT, False)
    for step in steps:
        out = _generate(lm, ids, DecodeConfig(**{**cfg.__dict__, "max_new_tokens": 1}), output_scores=True,
                        output_logits=True, return_dict_in_generate=True)
        raw, final = out.logits[0][0], out.scores[0][0]
        scores, expected = raw[None].clone(), [torch.softmax(raw, -1)]
        for _, processor in build_stages(cfg):  # the classes and order generate() uses
            scores = processor(ids, scores)
            expected.append(torch.softmax(scores, -1)[0])
        assert len(step.stages) == len(expected) == 8  # raw + 7 processors
        for cand in step.candidates:
            got = torch.tensor(cand.probs)
            want = torch.stack([e[cand.token_id] for e in expected])
            assert torch.allclose(got, want, atol=1e-5)
            assert abs(cand.probs[-1] - float(torch.softmax(final, -1)[cand.token_id])) < 1e-5
        for stage, dist in zip(step.stages, expected, strict=True):
            assert stage.surviving == int((dist > 0).sum())
        ids = torch.cat([ids, torch.tensor([[step.token_id]])], dim=-1)


def test_stage_order_is_generates_order(lm):
    cfg, _ = normalize(DecodeConfig(strategy=SAMPLING, temperature=0.7, top_k=40, top_p=0.9, min_p=0.02,
                                    typical_p=0.95, repetition_penalty=1.2, no_repeat_ngram_size=2))
    gen_cfg = lm.model.generation_config.__class__(**{**lm.model.generation_config.to_dict(),
                                                      **generate_kwargs(cfg)})
    theirs = lm.model._get_logits_processor(generation_config=gen_cfg, input_ids_seq_length=5,
                                            encoder_input_ids=torch.ones(1, 5, dtype=torch.long),
                                            prefix_allowed_tokens_fn=None, logits_processor=None,
                                            device="cpu", model_kwargs={})
    assert [type(p) for _, p in build_stages(cfg)] == [type(p) for p in theirs]


@pytest.mark.parametrize("cfg, strategy, words", [
    (DecodeConfig(temperature=0), GREEDY, "Temperature 0"),
    (DecodeConfig(top_p=0), GREEDY, "Top-p = 0"),
    (DecodeConfig(top_k=1), GREEDY, "Top-k = 1"),
    (DecodeConfig(min_p=1), GREEDY, "Min-p = 1"),
    (DecodeConfig(strategy=BEAM, num_beams=1), GREEDY, "one beam"),
    (DecodeConfig(strategy=CONTRASTIVE, penalty_alpha=0), GREEDY, "α = 0"),
    (DecodeConfig(strategy=CONTRASTIVE, contrastive_k=1), GREEDY, "one candidate"),
    (DecodeConfig(repetition_penalty=0), SAMPLING, "Repetition penalty must be > 0"),
    (DecodeConfig(typical_p=0), SAMPLING, "Typical-p must be > 0"),
    (DecodeConfig(max_new_tokens=0), SAMPLING, "Max new tokens"),
    (DecodeConfig(strategy="nonsense"), SAMPLING, "Unknown strategy"),
])
def test_degenerate_settings_are_mapped_and_explained(cfg, strategy, words):
    mapped, notes = normalize(cfg)
    assert mapped.strategy == strategy
    assert any(words in n for n in notes), notes
    build_stages(mapped)  # never raises: every processor gets valid arguments
    generate_kwargs(mapped)


def test_top_k_zero_means_no_filter_and_beams_are_clamped():
    mapped, _ = normalize(DecodeConfig(top_k=0))
    assert mapped.strategy == SAMPLING and not any("top-k" in name for name, _ in build_stages(mapped))
    assert generate_kwargs(mapped)["top_k"] == 0  # else generate() would apply its default top_k=50
    beams, notes = normalize(DecodeConfig(strategy=BEAM, num_beams=3, num_return_sequences=6))
    assert beams.num_return_sequences == 3 and notes


def test_temperature_zero_runs_greedy(lm):
    hot, _, notes = generate_text(lm, PROMPT, DecodeConfig(temperature=0, max_new_tokens=6, chat_template=False))
    greedy, _, _ = generate_text(lm, PROMPT, DecodeConfig(strategy=GREEDY, max_new_tokens=6, chat_template=False))
    assert hot == greedy and notes


def test_beam_search_scores(lm):
    from models.decoding.beams import beam_search

    cfg, _ = normalize(DecodeConfig(strategy=BEAM, num_beams=3, num_return_sequences=3, max_new_tokens=8,
                                    length_penalty=1.0, chat_template=False))
    beams = beam_search(lm, PROMPT, cfg).beams
    assert len(beams) == 3
    assert [b.score for b in beams] == sorted((b.score for b in beams), reverse=True)
    for b in beams:
        assert b.logprob < 0 and abs(b.score - b.logprob / b.length ** cfg.length_penalty) < 1e-3
    ids = encode_prompt(lm.tokenizer, PROMPT, False)
    best = _generate(lm, ids, DecodeConfig(**{**cfg.__dict__, "num_return_sequences": 1}))
    assert beams[0].text == lm.tokenizer.decode(best[0, ids.shape[1]:])


def test_temperature_sweep_shapes_and_top_p_cut(lm):
    sweep = temperature_sweep(lm, PROMPT, False, [0.5, 1.0, 2.0], top_p=0.9)
    assert len(sweep["tokens"]) == 15
    cold, hot = sweep["probs"][0.5], sweep["probs"][2.0]
    assert cold[0] > sweep["probs"][1.0][0] > hot[0]  # lower temperature sharpens the top token
    assert sweep["cut"][0.5] <= sweep["cut"][1.0] <= sweep["cut"][2.0]


def test_snippet_is_valid_python_with_the_settings():
    cfg, _ = normalize(DecodeConfig(temperature=0.7, top_p=0.9, min_p=0.05, seed=4, repetition_penalty=1.1))
    code = python_snippet("Say 'hi'", cfg)
    compile(code, "snippet", "exec")
    for part in ("do_sample=True", "temperature=0.7", "top_p=0.9", "min_p=0.05", "top_k=50",
                 "torch.manual_seed(4)", "repetition_penalty=1.1", "apply_chat_template"):
        assert part in code
    beam, _ = normalize(DecodeConfig(strategy=BEAM, num_beams=4, num_return_sequences=2))
    assert "num_beams=4" in python_snippet("x", beam) and "sequences_scores" in python_snippet("x", beam)


def test_presets_show_their_effects(lm):
    from models.decoding.presets import PRESETS

    def ngrams(ids, n):
        return [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]

    prompt, cfg, _ = PRESETS["Greedy repetition loop"]
    loop = [s.token_id for s in stream_steps(lm, prompt, normalize(cfg)[0])]
    assert len(set(ngrams(loop, 8))) < len(ngrams(loop, 8))  # some 8-token run comes back
    prompt, cfg, _ = PRESETS["Repetition penalty breaks the loop"]
    fixed = [s.token_id for s in stream_steps(lm, prompt, normalize(cfg)[0])]
    assert len(set(ngrams(fixed, 3))) == len(ngrams(fixed, 3)) and fixed[:len(loop)] != loop


def test_views_survive_hostile_tokens():
    import io

    from models.decoding.steps import Candidate, Stage, Step
    from tabs.decoding_views import step_summary, strip_figure, temperature_figure

    step = Step(0, 5, "<script>$x`", 0.6, [Stage("raw softmax", 9, 1.0, 2.0, 0.6, 1)],
                [Candidate(5, "<script>", [0.6], True)], 0.3, [(5, "$$", 0.6), (6, "$", 0.3)])
    summary = step_summary(step, SAMPLING)
    assert "<script>" not in summary and "&lt;script&gt;" in summary
    for fig in (strip_figure(step), temperature_figure({"tokens": ["$", "$$x"], "probs": {1.0: [0.6, 0.4]},
                                                        "cut": {1.0: 1}}, 0.5)):
        fig.savefig(io.BytesIO(), format="png")  # '$' must not start matplotlib math mode


def test_every_probability_band_has_a_colour():
    from models.decoding.steps import probability_band
    from tabs.decoding_views import BAND_COLORS

    bands = {probability_band(i / 100) for i in range(101)}
    assert bands == set(BAND_COLORS)

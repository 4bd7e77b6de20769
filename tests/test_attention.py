"""Attention adapters on the real models: same weights as the model, valid rows, causal mask,
the Q·K walk-through reproducing the weights, head statistics and head knock-out."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from models.attention.capture import HEATMAP_LIMIT, decoder_attention, encoder_attention
from models.attention.head_stats import head_stats, head_types
from models.attention.knockout import heads_off, knockout, parse_heads
from models.attention.walkthrough import walk_through


@pytest.fixture(scope="module")
def encoder(registry):
    return registry.encoder_with_attention()


@pytest.fixture(scope="module")
def lm(registry):
    return registry.chat_model(attn_implementation="eager")


@pytest.fixture(scope="module")
def pair(encoder):
    return encoder_attention(encoder, "The cat sat on the mat.", "It was tired.")


@pytest.fixture(scope="module")
def generated(lm):
    return decoder_attention(lm, "The capital of France is", new_tokens=3)


def direct_attentions(model, **inputs) -> np.ndarray:
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    return torch.stack([a[0] for a in out.attentions]).numpy()


def test_encoder_pair_matches_model_and_has_segments(encoder, pair):
    batch = encoder.tokenizer("The cat sat on the mat.", "It was tired.", return_tensors="pt")
    np.testing.assert_allclose(pair.attentions, direct_attentions(encoder.model, **batch), atol=1e-6)
    assert pair.tokens[0] == "[CLS]" and pair.tokens.count("[SEP]") == 2
    assert pair.segment_ids == batch["token_type_ids"][0].tolist()
    assert pair.tokens[pair.sentence_b_start - 1] == "[SEP]" and pair.segment_ids[pair.sentence_b_start] == 1
    assert pair.sep_positions == [i for i, t in enumerate(pair.tokens) if t == "[SEP]"]
    assert pair.attentions.shape == (6, 12, len(pair.tokens), len(pair.tokens))


def test_decoder_with_generated_tokens_matches_model(lm, generated):
    assert generated.generated_start is not None and generated.n_tokens == generated.generated_start + 3
    ids = torch.tensor([generated.input_ids])
    expected = direct_attentions(lm.model, input_ids=ids, attention_mask=torch.ones_like(ids))
    np.testing.assert_allclose(generated.attentions, expected, atol=1e-6)
    # greedy generation: the first generated token is the model's argmax after the prompt
    with torch.no_grad():
        logits = lm.model(input_ids=ids[:, :generated.generated_start]).logits
    assert int(logits[0, -1].argmax()) == generated.input_ids[generated.generated_start]
    assert "Paris" in "".join(generated.labels[generated.generated_start:])


@pytest.mark.parametrize("which", ["pair", "generated"])
def test_rows_sum_to_one(which, request):
    data = request.getfixturevalue(which)
    np.testing.assert_allclose(data.attentions.sum(-1), 1.0, atol=1e-5)
    assert (data.attentions >= 0).all()


def test_decoder_attention_is_zero_above_the_diagonal(generated):
    upper = np.triu(np.ones((generated.n_tokens,) * 2, dtype=bool), k=1)
    assert np.abs(generated.attentions[..., upper]).max() == 0.0
    assert generated.attentions[..., ~upper].max() > 0


def test_long_input_is_truncated_with_notice(encoder):
    data = encoder_attention(encoder, "word " * 400)
    assert data.n_tokens == HEATMAP_LIMIT and len(data.notices) == 1
    assert "402 tokens" in data.notices[0] and "only the first 256" in data.notices[0]
    att, tokens, _, notice = data.for_views(64)
    assert att.shape[-1] == len(tokens) == 64 and "first 64 of 256" in notice


def test_empty_input_is_rejected(encoder, lm):
    with pytest.raises(ValueError, match="Enter"):
        encoder_attention(encoder, "   ")
    with pytest.raises(ValueError, match="Enter"):
        decoder_attention(lm, "")


@pytest.mark.parametrize("layer,head,query", [(0, 0, 3), (3, 7, 5), (5, 11, 0)])
def test_walk_through_reproduces_encoder_weights(encoder, pair, layer, head, query):
    walk = walk_through(encoder.model, pair, layer, head, query)
    np.testing.assert_allclose(walk.softmax, pair.attentions[layer, head, query], atol=1e-5)
    assert walk.max_abs_diff < 1e-5 and walk.head_dim == 32 and not walk.rotary
    assert walk.scale == pytest.approx(32 ** -0.5)
    np.testing.assert_allclose(np.array(walk.scaled), np.array(walk.dot) * walk.scale, rtol=1e-5)


@pytest.mark.parametrize("layer,head,query", [(0, 0, 2), (12, 4, 6), (29, 8, 4)])
def test_walk_through_reproduces_decoder_weights_with_causal_mask(lm, generated, layer, head, query):
    walk = walk_through(lm.model, generated, layer, head, query)
    np.testing.assert_allclose(walk.softmax, generated.attentions[layer, head, query], atol=1e-5)
    assert walk.rotary and walk.head_dim == 64
    assert all(m == -np.inf for m in walk.mask[query + 1:]) and all(m == 0 for m in walk.mask[:query + 1])
    assert len(walk.rows()) == generated.n_tokens


def test_head_stats_on_known_patterns():
    n = 6
    identity = np.eye(n)
    previous = np.eye(n, k=-1)
    previous[0, 0] = 1.0
    first = np.zeros((n, n))
    first[:, 0] = 1.0
    uniform = np.full((n, n), 1 / n)
    att = np.stack([identity, previous, first, uniform])[None]  # 1 layer, 4 heads
    stats = head_stats(att, sep_positions=[n - 1])
    assert stats.scores["self"][0, 0] == 1.0 and stats.scores["entropy"][0, 0] == 0.0
    assert stats.scores["previous"][0, 1] == 1.0
    assert stats.scores["first"][0, 2] == 1.0
    assert stats.scores["entropy"][0, 3] == pytest.approx(np.log2(n))
    assert stats.scores["sep"][0, 3] == pytest.approx(1 / n)
    assert head_types(stats) == [["self", "previous", "first", "broad"]]
    assert np.isnan(head_stats(att).scores["sep"]).all()  # no [SEP] in the input


def test_head_stats_on_the_model_find_sinks(pair, generated):
    stats = head_stats(pair.attentions, pair.sep_positions)
    assert stats.shape == (6, 12) and len(stats.rows()) == 72
    deep = head_stats(generated.attentions)
    # most SmolLM2 heads past the first layers put their attention on the first token
    assert (deep.scores["first"][2:] > 0.5).mean() > 0.5


def test_parse_heads():
    assert parse_heads("2.3, 0.1", 6, 12) == [(0, 1), (2, 3)]
    assert parse_heads("L1H2; 4.*", 6, 3) == [(1, 2), (4, 0), (4, 1), (4, 2)] == parse_heads("1.2 4.all", 6, 3)
    for bad, message in [("7.0", "Layer 7"), ("1.12", "Head 12"), ("x", "not a head"), ("", "at least one")]:
        with pytest.raises(ValueError, match=message):
            parse_heads(bad, 6, 12)


def test_knockout_decoder_changes_next_token_distribution(lm, generated):
    one = knockout(lm, generated, [(12, 4)])
    whole_layer = knockout(lm, generated, parse_heads("0.*", 30, 9))
    assert one.top_before == whole_layer.top_before and len(one.top_before) == 5
    assert 0 < one.kl < whole_layer.kl and whole_layer.kl > 0.5
    assert whole_layer.top_after != whole_layer.top_before


def test_knockout_hooks_are_removed_and_confined_to_the_calling_thread(lm, generated):
    inputs = generated.model_inputs()
    with torch.no_grad():
        reference = lm.model(**inputs).logits
    seen = {}

    def other_thread():
        with torch.no_grad():
            seen["logits"] = lm.model(**inputs).logits

    with heads_off(lm.model, parse_heads("0.*", 30, 9)), torch.no_grad():
        inside = lm.model(**inputs).logits
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    with torch.no_grad():
        after = lm.model(**inputs).logits
    assert not torch.allclose(inside, reference, atol=1e-3)
    torch.testing.assert_close(seen["logits"], reference)
    torch.testing.assert_close(after, reference)


def test_knockout_encoder_embedding_cosine(registry, encoder, pair):
    result = knockout(encoder, pair, parse_heads("0.*", 6, 12))
    assert 0 < result.cosine < 0.999 and len(result.moved_tokens) == 5
    assert knockout(encoder, pair, [(5, 0)]).cosine > result.cosine
    # the pooling is the sentence-transformers one: unchanged, it gives the model's embedding
    single = encoder_attention(encoder, "The cat sat on the mat.")
    with torch.no_grad():
        hidden = encoder.model(**single.model_inputs()).last_hidden_state
    mine = torch.nn.functional.normalize(hidden[0].mean(0), dim=0).numpy()
    theirs = registry.sentence_encoder().encode("The cat sat on the mat.")
    assert float(np.dot(mine, theirs)) == pytest.approx(1.0, abs=1e-5)

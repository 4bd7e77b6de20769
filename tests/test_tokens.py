"""From text to numbers, on the real models: tokenizer splits, merge paths, embeddings, positions, logit lens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.chat import encode_chat, user_message
from models.tokens import merges, positions, sentence_map, token_vectors
from models.tokens.logit_lens import MAX_PROMPT_TOKENS, logit_lens
from models.tokens.tokenization import SPECIAL, TEMPLATE, TEXT, UNKNOWN, tokenize
from tabs import tokens_views as views

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)"> & "quotes"'


@pytest.fixture(scope="module")
def encoder(registry):
    return registry.sentence_encoder()


def pieces(result) -> list[str]:
    return [p.token for p in result.pieces]


def test_bpe_and_wordpiece_split_the_same_words_differently(lm, encoder):
    bpe = tokenize(lm.tokenizer, "SmolLM2", "unbelievably tokenization")
    wordpiece = tokenize(encoder.tokenizer, "MiniLM", "unbelievably tokenization")
    assert pieces(bpe) == ["un", "belie", "v", "ably", "Ġtoken", "ization"]
    assert pieces(wordpiece) == ["[CLS]", "un", "##bel", "##ie", "##va", "##bly", "token", "##ization", "[SEP]"]
    assert bpe.algorithm == "byte-level BPE" and wordpiece.algorithm == "WordPiece"
    assert (bpe.text_tokens, wordpiece.text_tokens) == (6, 7)
    assert wordpiece.count(SPECIAL) == 2 and bpe.count(SPECIAL) == 0
    assert [p.token_id for p in bpe.pieces] == lm.tokenizer("unbelievably tokenization")["input_ids"]


def test_numbers_emoji_and_accents(lm, encoder):
    bpe = tokenize(lm.tokenizer, "SmolLM2", "1234567 🤖 naïve")
    wordpiece = tokenize(encoder.tokenizer, "MiniLM", "1234567 🤖 naïve")
    assert pieces(bpe)[:7] == list("1234567")  # SmolLM2's vocabulary has one token per digit
    assert pieces(wordpiece)[1:5] == ["123", "##45", "##6", "##7"]
    robot = [p for p in bpe.pieces if p.byte_hex]  # the emoji's 4 bytes end up in 3 pieces, none a whole character
    assert "".join(p.byte_hex.replace(" ", "") for p in robot) == " 🤖".encode().hex()
    assert [p.kind for p in wordpiece.pieces].count(UNKNOWN) == 1 and "[UNK]" in pieces(wordpiece)
    assert wordpiece.normalized == "1234567 🤖 naive"  # lower-cased, accents stripped
    assert "naive" in pieces(wordpiece)


def test_chat_template_tokens_are_marked(lm, encoder):
    result = tokenize(lm.tokenizer, "SmolLM2", "Hello there", as_chat=True)
    assert [p.token_id for p in result.pieces] == encode_chat(lm.tokenizer, user_message("Hello there"))
    assert [p.token for p in result.pieces if p.kind == TEXT] == ["Hello", "Ġthere"]
    assert result.count(TEMPLATE) > 10 and result.count(SPECIAL) == 5  # 3 x <|im_start|>, 2 x <|im_end|>
    assert result.text_tokens == 2
    plain_encoder = tokenize(encoder.tokenizer, "MiniLM", "Hello there", as_chat=True)
    assert pieces(plain_encoder) == ["[CLS]", "hello", "there", "[SEP]"]
    assert "no chat template" in plain_encoder.notes[0]


@pytest.mark.parametrize("word", ["tokenization", "unbelievably", "recieved", "2024", "🤖", "naïve café",
                                  "Pneumonoultramicroscopic", "hello,world", "ÅngströmÅngström"])
def test_merge_path_and_lookups_replay_the_tokenizers(lm, encoder, word):
    paths = merges.bpe_merge_path(lm.tokenizer, word)
    assert [p for path in paths for p in path.pieces] == lm.tokenizer.tokenize(" " + word)
    for path in paths:
        ranks = [step.rank for step in path.steps]
        assert all(step.left + step.right in step.pieces for step in path.steps)
        assert ranks == sorted(ranks)  # a merge that uses a merged piece was learned after it
    lookups = merges.wordpiece_lookups(encoder.tokenizer, word)
    assert [p for path in lookups for p in path.pieces] == encoder.tokenizer.tokenize(word)


def test_wordpiece_takes_the_longest_piece_first(encoder):
    (path,) = merges.wordpiece_lookups(encoder.tokenizer, "unbelievably")
    first = path.lookups[0]
    assert first.candidate == "unbelievably" and not first.found  # the whole word is tried first
    found = [lk for lk in path.lookups if lk.found]
    assert [lk.candidate for lk in found] == list(path.pieces)
    vocab = encoder.tokenizer.get_vocab()
    # every longer candidate at the same start was looked up and missed
    assert all(lk.candidate not in vocab for lk in path.lookups if not lk.found)


def test_a_phrase_is_not_a_word(lm):
    with pytest.raises(ValueError, match="up to 48"):
        merges.bpe_merge_path(lm.tokenizer, "x" * 49)
    with pytest.raises(ValueError, match="Type a word"):
        merges.bpe_merge_path(lm.tokenizer, "  ")


def test_logit_lens_last_layer_is_the_models_own_distribution(lm, one_torch_thread):
    prompt = "The capital of France is Paris, and the capital of Italy is"
    lens = logit_lens(lm, prompt, top_k=5)
    ids = torch.tensor([lens.input_ids])
    with torch.inference_mode():
        out = lm.model(input_ids=ids, output_hidden_states=True)
        probs = out.logits[0].softmax(-1)
        top = probs.topk(5, dim=-1)
        # an intermediate layer, by hand: the final norm and the head on that layer's states
        middle = lm.model.lm_head(lm.model.model.norm(out.hidden_states[15][0])).softmax(-1).topk(5, dim=-1)
    assert len(lens.layers) == lm.model.config.num_hidden_layers + 1
    assert (lens.top_ids[-1] == top.indices.numpy()).all()
    assert np.abs(lens.top_probs[-1] - top.values.numpy()).max() < 1e-4
    assert (lens.chosen_ids == top.indices[:, 0].numpy()).all() and (lens.chosen_ranks[-1] == 1).all()
    assert np.abs(lens.chosen_probs[-1] - top.values[:, 0].numpy()).max() < 1e-4
    assert (lens.top_ids[15] == middle.indices.numpy()).all()
    assert np.abs(lens.top_probs[15] - middle.values.numpy()).max() < 1e-4
    assert lens.text(lens.chosen_ids[-1]) == " Rome"
    assert lens.chosen_ranks[0, -1] > 1  # the embeddings do not know the answer yet


def test_logit_lens_bounds_its_prompt(lm, one_torch_thread):
    lens = logit_lens(lm, "word " * 200, top_k=99)
    assert len(lens.tokens) == MAX_PROMPT_TOKENS and lens.top_ids.shape[2] == 10
    assert "first 64" in lens.notes[0]
    chat = logit_lens(lm, "Hi", as_chat=True, top_k=1)
    assert chat.input_ids == encode_chat(lm.tokenizer, user_message("Hi"))
    with pytest.raises(ValueError, match="Type a prompt"):
        logit_lens(lm, "   ")


def test_similarity_matrix_is_symmetric_with_ones_on_the_diagonal(encoder):
    texts, groups = sentence_map.texts_and_groups("# pets\nA cat.\nA dog.\n\n# money\nStocks fell.\nBonds rose.")
    assert groups == ["pets", "pets", "money", "money"]
    smap = sentence_map.sentence_map(encoder, texts, groups, dims=3)
    assert np.array_equal(smap.similarity, smap.similarity.T)
    assert np.allclose(np.diag(smap.similarity), 1.0)
    assert smap.coordinates.shape == (4, 3)
    assert smap.explained == sorted(smap.explained, reverse=True) and 0 < sum(smap.explained) <= 1 + 1e-9
    assert smap.similarity[0, 1] > smap.similarity[0, 2]  # a cat is closer to a dog than to stocks
    with pytest.raises(ValueError, match="at least 3"):
        sentence_map.sentence_map(encoder, ["one", "two"])
    with pytest.raises(ValueError, match="up to 50"):
        sentence_map.sentence_map(encoder, ["text"] * 51)


def test_long_texts_are_cut_in_tokens(encoder):
    smap = sentence_map.sentence_map(encoder, ["word " * 500, "short", "another"], dims=2)
    assert len(encoder.tokenizer(smap.texts[0], add_special_tokens=False)["input_ids"]) == sentence_map.MAX_TOKENS
    assert "cut" in smap.notes[0]


def test_nearest_tokens_and_analogy(lm):
    near = token_vectors.nearest_tokens(lm, "king", k=5)
    assert near.query.text == " king" and near.query.token_id not in [n.token_id for n in near.neighbours]
    assert [n.cosine for n in near.neighbours] == sorted([n.cosine for n in near.neighbours], reverse=True)
    result = token_vectors.analogy(lm, "king", "man", "woman", "queen")
    assert result.expected.text == " queen" and result.expected_rank >= 1
    assert result.expected_rank <= result.expected_rank_with_inputs
    assert {t.token_id for t in result.tokens}.isdisjoint(n.token_id for n in result.top)
    with pytest.raises(ValueError, match="not one token"):
        token_vectors.nearest_tokens(lm, "Pneumonoultramicroscopic")


def test_rotary_score_depends_only_on_distance(lm):
    curve = positions.rotary_scores(lm, "cat", "dog", layer=1, max_distance=64)
    moved = positions.rotary_scores(lm, "cat", "dog", layer=1, max_distance=64, key_position=500)
    assert curve.scores.shape == (lm.model.config.num_attention_heads, 65)
    assert np.abs(curve.scores - moved.scores).max() < 1e-3
    attention = lm.model.model.layers[0].self_attn
    with torch.inference_mode():
        ids = [token_vectors.word_token(lm.tokenizer, w) for w in ("cat", "dog")]
        hidden = lm.model.model.layers[0].input_layernorm(lm.model.model.embed_tokens.weight[ids])
        q = attention.q_proj(hidden[0]).view(-1, attention.head_dim)
        k = attention.k_proj(hidden[1]).view(-1, attention.head_dim).repeat_interleave(curve.heads_per_kv, dim=0)
        unrotated = (q * k).sum(-1) * attention.scaling
    assert np.allclose(curve.scores[:, 0], unrotated.numpy(), atol=1e-4)  # distance 0: the rotations cancel
    assert not np.allclose(curve.scores[:, 0], curve.scores[:, 40], atol=1e-2)


def test_learned_positions_similarity(encoder):
    matrix = positions.learned_position_similarity(encoder, 32)
    assert matrix.shape == (32, 32) and np.array_equal(matrix, matrix.T)
    assert np.allclose(np.diag(matrix), 1.0)
    assert matrix[10, 11] > matrix[10, 30]  # neighbouring positions learned similar vectors


def test_hostile_text_stays_text_in_the_html(lm, encoder):
    for result in (tokenize(lm.tokenizer, "SmolLM2", HOSTILE), tokenize(encoder.tokenizer, "<b>MiniLM</b>", HOSTILE)):
        html = views.pieces_html(result)
        assert "<script" not in html and "<img" not in html and "<b>MiniLM" not in html
        assert "&lt;" in html
    word = "<img/src=x/onerror=alert(1)>"
    for html in (views.merge_path_html(merges.bpe_merge_path(lm.tokenizer, word)),
                 views.lookups_html(merges.wordpiece_lookups(encoder.tokenizer, word))):
        assert "<img" not in html and "&lt;" in html
    lens = logit_lens(lm, HOSTILE, top_k=3)
    summary = views.cell_summary(lens, 0, 1)
    assert "<script" not in summary and "<img" not in summary

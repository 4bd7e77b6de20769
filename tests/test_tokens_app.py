"""The "From text to numbers" tab inside the running app: its endpoints through gradio_client."""

from __future__ import annotations

import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

HOSTILE = '<script>alert(1)</script> <img src=x onerror="alert(2)">'


def test_tokenize_endpoint_gives_both_tokenizers(client, lm):
    out = client.predict("unbelievably 🤖", False, api_name="/tokenize")
    chat, encoder = out["chat_model"], out["encoder"]
    assert chat["algorithm"] == "byte-level BPE" and encoder["algorithm"] == "WordPiece"
    assert chat["pieces"][:4] == ["un", "belie", "v", "ably"]
    assert chat["ids"] == lm.tokenizer("unbelievably 🤖")["input_ids"]
    assert encoder["pieces"] == ["[CLS]", "un", "##bel", "##ie", "##va", "##bly", "[UNK]", "[SEP]"]
    assert encoder["unknown_tokens"] == 1 and encoder["special_tokens"] == 2
    as_chat = client.predict("Hi", True, api_name="/tokenize")["chat_model"]
    assert as_chat["text_tokens"] == 1 and as_chat["template_tokens"] > 10 and "<|im_start|>" in as_chat["pieces"]


def test_tokenize_rejects_a_book(client):
    with pytest.raises(AppError, match="up to 10,000"):
        client.predict("word " * 3000, False, api_name="/tokenize")


def test_embedding_map_endpoint(client):
    texts = ["A cat sleeps.", "A dog barks.", "Stocks fell today.", "Bonds rose."]
    out = client.predict(texts, ["pets", "pets", "money", "money"], 7, api_name="/embedding_map")  # 7 -> 3-D
    sim = out["similarity"]
    assert len(out["coordinates"]) == 4 and all(len(point) == 3 for point in out["coordinates"])
    assert all(abs(sim[i][i] - 1) < 1e-6 for i in range(4))
    assert all(sim[i][j] == sim[j][i] for i in range(4) for j in range(4))
    assert sim[0][1] > sim[0][2] and out["groups"] == ["pets", "pets", "money", "money"]
    with pytest.raises(AppError, match="up to 50 texts"):
        client.predict(["text"] * 200, None, 2, api_name="/embedding_map")


def test_logit_lens_endpoint_ends_with_the_models_choice(client, lm):
    prompt = "The opposite of hot is"
    out = client.predict(prompt, False, 99, api_name="/logit_lens")  # top-k 99 -> 10
    assert out["layers"][0] == "embeddings" and len(out["layers"]) == lm.model.config.num_hidden_layers + 1
    assert len(out["top"]) == len(out["layers"]) and len(out["top"][0]) == len(out["tokens"])
    assert all(len(cell) == 10 for row in out["top"] for cell in row)
    ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
    with torch.inference_mode():
        probs = lm.model(input_ids=ids).logits[0, -1].softmax(-1)
    last = out["top"][-1][-1]
    assert last[0]["id"] == int(probs.argmax()) == out["chosen"]["ids"][-1]
    assert abs(last[0]["p"] - float(probs.max())) < 1e-4
    assert out["chosen"]["rank"][-1][-1] == 1
    long = client.predict("word " * 300, False, 1, api_name="/logit_lens")
    assert len(long["tokens"]) == 64 and "first 64" in long["notes"][0]
    with pytest.raises(AppError, match="Type a prompt"):
        client.predict("  ", api_name="/logit_lens")


def test_tab_listeners_escape_and_stay_in_range(client):
    chat_html, encoder_html, counts, word, merges_html, lookups_html = client.predict(
        HOSTILE, False, api_name="/tokens_tokenize")
    for html in (chat_html, encoder_html, merges_html, lookups_html):
        assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in encoder_html or "&lt;" in encoder_html
    assert counts["headers"][3] == "tokens for your text" and len(counts["data"]) == 2
    explained = client.predict("unbelievably", api_name="/tokens_explain_word")
    assert "merge rank" in explained[0] and "##bly" in explained[1]
    with pytest.raises(AppError, match="not one token"):
        client.predict("Pneumonoultramicroscopic", 5, api_name="/tokens_neighbours")
    with pytest.raises(AppError, match="maximum"):  # a slider's own range holds for API callers too
        client.predict("cat", "dog", 99, 256, api_name="/tokens_rotary")
    assert client.predict("cat", "dog", 30, 2048, api_name="/tokens_rotary")["type"] == "matplotlib"
    table, note = client.predict("king", "man", "woman", "queen", api_name="/tokens_analogy")
    assert "queen" in note and table["data"][0][1] == "␣queen"
    classics = client.predict(api_name="/tokens_classic_analogies")
    assert len(classics["data"]) == 6 and classics["headers"][0] == "a − b + c"


def test_lens_listener_then_a_cell_in_the_same_session(app_url):
    session = Client(app_url, verbose=False)  # one session: the lens result stays in its state
    grid, layers, positions, summary, cell, chart, notes = session.predict(
        "One, two, three, four,", False, 5, api_name="/tokens_lens")
    assert grid["headers"][0] == "read after" and grid["data"][0][0] == "layer 30"
    assert "styling" in grid["metadata"]  # shaded by probability
    assert layers["value"] == 30 and positions["value"] == len(grid["headers"]) - 2
    assert "layer 30" in summary and chart["type"] == "matplotlib"
    summary, cell, chart = session.predict(3, 1, api_name="/tokens_lens_cell")
    assert summary.startswith("**layer 3**, after position 1") and len(cell["data"]) == 5

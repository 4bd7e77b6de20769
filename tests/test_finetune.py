"""Fine-tuning on the real models: the bundled data, CSV checks, scores, the regimes' margins on the
pair task, determinism, Stop, the shared models left untouched, and LoRA on SmolLM2.

Step counts are small so the module stays quick; the margins asserted here are the ones measured
with these exact settings (same seed, so the same numbers on every run of the same machine type).
"""

from __future__ import annotations

import copy
import hashlib
import threading
from dataclasses import replace

import numpy as np
import pytest

from models.finetune import classifier as clf
from models.finetune import lora_chat, metrics
from models.finetune.data import MAX_UPLOAD_BYTES, PAIRS, TOPICS, DataError, load_bundled, parse_csv
from models.finetune.embeddings import EmbeddingCache
from models.finetune.encoder import FROZEN, LORA, TOP_LAYERS, Regime
from models.finetune.jobs import Session

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FROZEN_CFG = clf.RunConfig(Regime(FROZEN), learning_rate=1e-2, steps=300, seed=0)  # the tab's defaults
TUNED_CFG = clf.RunConfig(Regime(LORA, rank=8), learning_rate=3e-3, steps=60, seed=0)
SHORT_CFG = clf.RunConfig(Regime(TOP_LAYERS, layers=1), learning_rate=3e-3, steps=3, seed=3)
# Measured with the settings above on the bundled pair task (validation accuracy, 154 pairs): zero-shot
# cosine threshold 70.1%, frozen head 76.6%, LoRA 82.5%; asserted with a little slack for other CPUs.
FROZEN_OVER_ZERO_SHOT = 0.05
TUNED_OVER_FROZEN = 0.04


@pytest.fixture(scope="module")
def encoder(registry):
    return registry.encoder_with_attention()


@pytest.fixture(scope="module")
def cache():
    return EmbeddingCache()


@pytest.fixture(scope="module")
def pairs():
    return load_bundled(PAIRS)


def train(encoder, task, cfg, cache, **kwargs):
    return clf.train_classifier(encoder.model, copy.deepcopy(encoder.tokenizer), task, cfg, cache=cache, **kwargs)


def checksum(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def runs(encoder, pairs, cache):
    """The frozen head and one fine-tuned regime on the pair task, and the shared encoder's checksum
    before and after."""
    before = checksum(encoder.model)
    frozen = train(encoder, pairs, FROZEN_CFG, cache)
    tuned = train(encoder, pairs, TUNED_CFG, cache)
    return frozen, tuned, before, checksum(encoder.model)


def test_bundled_tasks_are_balanced_with_a_fixed_split():
    for name, minimum in ((PAIRS, 400), (TOPICS, 300)):
        task = load_bundled(name)
        labels = [ex.label for ex in task.train + task.validation]
        assert len(labels) >= minimum
        assert len(set(np.bincount(labels))) == 1  # balanced
        assert load_bundled(name).validation == task.validation  # fixed
        assert not {(ex.text, ex.text_b) for ex in task.train} & {(ex.text, ex.text_b) for ex in task.validation}
    assert load_bundled(PAIRS).is_pair and not load_bundled(TOPICS).is_pair


def count_words(text: str) -> int:
    return len(text.split())


GOOD_ROWS = "".join(f"sentence number {i},{'yes' if i % 2 else 'no'}\n" for i in range(40))


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"x" * (MAX_UPLOAD_BYTES + 1), "limit is"),
    (b"\xff\xfe\x00bad", "not UTF-8"),
    (b"sentence,category\n" + GOOD_ROWS.encode(), "header must be"),
    (b"text,label\n" + b"a,b\n" * 5, "data rows"),
    (("text,label\n" + GOOD_ROWS + "one,two,three\n").encode(), "Row 42 has 3 columns"),
    (("text,label\n" + GOOD_ROWS + ",yes\n").encode(), "empty text"),
    (("text,label\n" + GOOD_ROWS + "word " * 80 + ",yes\n").encode(), "tokens"),
    (("text,label\n" + GOOD_ROWS + "x" * 600 + ",yes\n").encode(), "bytes"),
    (("text,label\n" + "".join(f"s {i},{i}\n" for i in range(30))).encode(), "distinct labels"),
    (("text,label\n" + GOOD_ROWS + "rare one,maybe\n").encode(), "at least 4"),
])
def test_csv_upload_is_checked_with_clear_messages(data, message):
    with pytest.raises(DataError, match=message):
        parse_csv(data, count_words)


def test_csv_upload_single_and_pairs():
    task = parse_csv(("text,label\n" + GOOD_ROWS).encode(), count_words)
    assert task.labels == ("no", "yes") and not task.is_pair
    assert len(task.train) + len(task.validation) == 40 and task.validation
    assert parse_csv(("text,label\n" + GOOD_ROWS).encode(), count_words).validation == task.validation
    rows = "".join(f"first {i},second {i},{i % 2},{'validation' if i < 8 else 'train'}\n" for i in range(30))
    pair = parse_csv(("\ufefftext,text_b,label,split\n" + rows).encode(), count_words)
    assert pair.is_pair and len(pair.validation) == 8 and pair.labels == ("0", "1")


def test_scores_match_a_hand_count():
    result = metrics.scores([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], 2)
    assert result.accuracy == pytest.approx(0.6)
    assert result.confusion == ((1, 1), (1, 2))
    assert result.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # F1 of label 1
    assert metrics.best_threshold([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]) == pytest.approx(0.6)
    assert metrics.majority_label([2, 1, 2]) == 2


def test_frozen_beats_zero_shot_and_fine_tuning_beats_frozen(runs):
    frozen, tuned, _, _ = runs
    majority = 0.5  # the pair task is balanced
    assert frozen.baseline.accuracy == tuned.baseline.accuracy  # the same cosine-threshold baseline
    assert frozen.final.accuracy >= frozen.baseline.accuracy + FROZEN_OVER_ZERO_SHOT
    assert tuned.final.accuracy >= frozen.final.accuracy + TUNED_OVER_FROZEN
    assert min(frozen.final.accuracy, tuned.final.accuracy) >= majority + 0.10
    assert frozen.trainable == 4 * 384 * 2 + 2  # the head on [u, v, |u - v|, u * v]
    assert 30 * frozen.trainable < tuned.trainable < tuned.total / 100  # LoRA: under 1% of the model
    assert 0.5 < tuned.padding["saved_vs_fixed"] < 1  # dynamic padding pads far less than 64 tokens


def test_training_never_changes_the_shared_encoder(runs):
    _, _, before, after = runs
    assert before == after


def test_same_seed_same_curve_and_scores(encoder, pairs, cache, runs):
    frozen, _, _, _ = runs
    again = train(encoder, pairs, FROZEN_CFG, cache)
    assert again.history == frozen.history and again.final == frozen.final
    assert train(encoder, pairs, replace(FROZEN_CFG, seed=1), cache).history != frozen.history
    topics = load_bundled(TOPICS)  # a shorter validation set keeps the unfrozen runs quick
    first, second = train(encoder, topics, SHORT_CFG, cache), train(encoder, topics, SHORT_CFG, cache)
    assert first.history == second.history and first.final == second.final
    assert first.weights.keys() == second.weights.keys()
    assert all(np.array_equal(first.weights[k].numpy(), second.weights[k].numpy()) for k in first.weights)


def test_stop_ends_the_run_within_a_step_and_keeps_the_best(encoder, cache):
    stop = threading.Event()
    steps_seen = []

    def emit(event):
        if event["kind"] == "loss":
            steps_seen.append(event["step"])
            if event["step"] >= 2:
                stop.set()

    cfg = clf.RunConfig(Regime(TOP_LAYERS, layers=1), learning_rate=3e-3, steps=200, seed=0)
    run = train(encoder, load_bundled(TOPICS), cfg, cache, stop=stop, emit=emit)
    assert run.stopped and run.steps_done <= 3
    assert run.best_step <= run.steps_done and run.weights  # the best checkpoint so far


def test_predictions_come_from_the_sessions_own_weights(encoder, runs):
    frozen, tuned, _, _ = runs
    tokenizer = copy.deepcopy(encoder.tokenizer)
    a, b = "The shop opens at nine.", "The shop opens at nine o'clock."
    one, two = clf.predict(encoder.model, tokenizer, frozen, a, b), clf.predict(encoder.model, tokenizer, tuned, a, b)
    assert set(one["probabilities"]) == {"different", "paraphrase"}
    assert sum(one["probabilities"].values()) == pytest.approx(1.0)
    assert one["cosine_before"] == pytest.approx(one["cosine_after"], abs=1e-5)  # a frozen encoder does not move
    assert one["probabilities"] != two["probabilities"]


def test_sessions_keep_their_own_models(encoder, cache):
    """Two sessions training one after another: each keeps its own task's model."""
    topics, pairs = load_bundled(TOPICS), load_bundled(PAIRS)
    first, second = Session(), Session()
    for session, task in ((first, topics), (second, pairs)):
        def target(stop, emit, session=session, task=task):
            session.classifier = train(encoder, task, clf.RunConfig(Regime(FROZEN), steps=20), cache, stop=stop,
                                       emit=emit)
            return session.classifier

        job = session.start(target)
        list(job.events())
        job.outcome()
    assert first.classifier.labels == topics.labels and second.classifier.labels == pairs.labels
    assert first.classifier.weights["head.weight"].shape == (4, 384)  # four topics, one sentence
    assert second.classifier.weights["head.weight"].shape == (2, 4 * 384)  # two labels, a pair


def test_lora_raises_the_likelihood_of_the_trained_style_on_held_out_prompts(lm):
    before = checksum(lm.model)
    run = lora_chat.train_lora(lm, lora_chat.LoraSettings(steps=8, learning_rate=3e-3, batch_size=4, seed=0),
                               demo_prompts=1, max_new_tokens=12)
    assert run.heldout_loss[1] < run.heldout_loss[0] - 0.5
    probe_before = np.mean([p for _, p in run.probe["before"]])
    probe_after = np.mean([p for _, p in run.probe["after"]])
    assert probe_after > probe_before + 0.2
    assert run.trainable < run.total / 100  # LoRA trains under 1% of the parameters
    assert checksum(lm.model) == before  # the shared chat model is untouched
    report = lora_chat.compare(lm, run, "What is the capital of Spain?", max_new_tokens=12)
    assert report["parameters_merged"] < report["parameters_with_adapter"]
    assert report["max_logit_difference"] < 1e-3 and report["adapter"] == report["merged"]

"""The Fine-tuning tab inside the running app, through gradio_client: the three API endpoints, the
clamping of their numbers, Stop, and sessions that never see each other's models; building the tab
loads no training library (the app's page is up without transformers' Trainer and peft)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from models.finetune.data import PAIRS, TOPICS

ROOT = Path(__file__).parent.parent


def test_the_tab_imports_no_training_library():
    """transformers' Trainer pulls in peft and torchao (about ten seconds): the first run loads them."""
    code = ("import sys, tabs.finetune; "
            "print(sorted(m for m in ('peft', 'torchao', 'transformers.trainer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def classify(client, task=TOPICS, regime="frozen", steps=30, **kwargs):
    return client.predict(task=task, regime=regime, optimizer=kwargs.pop("optimizer", "adamw"),
                          learning_rate=kwargs.pop("learning_rate", 3e-3), steps=steps, seed=kwargs.pop("seed", 0),
                          api_name="/finetune_classifier")


def test_classifier_endpoint_reports_baseline_final_and_history(client):
    result = classify(client)
    assert result["task"] == TOPICS and result["regime"] == "frozen"
    assert result["baseline"]["accuracy"] == pytest.approx(0.25)  # always the most frequent of four topics
    assert result["final"]["accuracy"] > result["baseline"]["accuracy"] + 0.5
    assert len(result["final"]["confusion"]) == 4
    assert result["trainable_parameters"] == 384 * 4 + 4
    assert result["loss_history"] and result["validation_history"][0][0] == 0
    assert not result["notes"]


def test_numbers_are_clamped_to_the_ui_ranges(client):
    result = classify(client, steps=1, learning_rate=50.0, seed=-5)
    assert result["steps"] == 5 and result["learning_rate"] == 1.0 and result["seed"] == 0
    assert len(result["notes"]) == 3
    with pytest.raises(AppError, match="not in the list of choices|Unknown regime"):
        classify(client, regime="everything")


def test_sessions_never_see_each_other(app_url):
    """Two students train one after another; each predicts with their own model only."""
    alice, bob, carol = (Client(app_url, verbose=False) for _ in range(3))
    classify(alice, task=TOPICS)
    classify(bob, task=PAIRS)
    topic = alice.predict("I booked a cheap flight and a hotel by the sea.", "", api_name="/finetune_predict")
    assert set(topic["probabilities"]) == {"food", "health", "money", "travel"} and topic["label"] == "travel"
    pair = bob.predict("The museum is closed on Mondays.", "On Mondays the museum doesn't open.",
                       api_name="/finetune_predict")
    assert set(pair["probabilities"]) == {"different", "paraphrase"} and "cosine_after" in pair
    with pytest.raises(AppError, match="Train a model first"):
        carol.predict("Hello there.", "", api_name="/finetune_predict")


def test_stop_ends_a_streamed_run_and_keeps_its_best_checkpoint(app_url):
    """The page's Train streams the curve; Stop (which also cancels that event) waits for the run
    to end at the next step and shows the best checkpoint so far."""
    client = Client(app_url, verbose=False)
    # task, regime, N layers, LoRA rank, optimizer, learning rate, steps, batch size, seed
    job = client.submit(TOPICS, "lora", 2, 8, "adamw", 3e-3, 400, 16, 0, api_name="/finetune_train")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and not any("Training… step" in str(out) for out in job.outputs()):
        time.sleep(1)
    status, _, _, summary, *_ = client.predict(api_name="/finetune_stop")
    assert status.startswith("Done") and "Stopped early" in summary
    assert int(re.search(r"(\d+) steps in", summary).group(1)) < 400


def test_lora_endpoint_answers_before_and_after(client):
    result = client.predict(steps=4, learning_rate=3e-3, rank=4, seed=0, api_name="/finetune_lora")
    assert len(result["before"]) == len(result["after"]) == 3
    assert result["heldout_loss_after"] < result["heldout_loss_before"]
    assert result["loss_history"] and result["trainable_percent"] < 1
    answer = client.predict("What is the capital of Spain?", "adapter on", api_name="/lora_answer")
    assert answer.startswith("**adapter on:**")
    assert "dropped" in client.predict(api_name="/lora_drop")
    with pytest.raises(AppError, match="Train"):
        client.predict("What is the capital of Spain?", "adapter on", api_name="/lora_answer")

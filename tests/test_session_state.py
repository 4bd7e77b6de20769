"""Session state is bounded in bytes, and gradio keeps only as many sessions as the budget holds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np


def test_the_attention_state_a_session_keeps_is_a_quarter_of_float32(registry, one_torch_thread):
    from app import STATE_MB_PER_SESSION
    from models.attention.capture import HEATMAP_LIMIT
    from tabs.attention import analyze

    prompt = " ".join(f"word{i}" for i in range(400))  # past the heatmap's 256 tokens: the largest state there is
    run = analyze(registry, "decoder", prompt, "", 0, False, "0", progress=lambda *args, **kwargs: None)
    data = run.data
    assert data.n_tokens == HEATMAP_LIMIT and data.attentions.dtype == np.uint8
    assert data.attentions.nbytes <= 18_000_000 < STATE_MB_PER_SESSION * 1e6
    rows = data.head_matrix(data.n_layers - 1, 0)
    assert rows.dtype == np.float32 and np.allclose(rows.sum(axis=1), 1.0, atol=0.15)  # still weights, at 1/255 steps
    assert data.for_views()[0].dtype == np.float32


def test_gradio_keeps_only_as_many_sessions_as_the_state_budget_holds(settings):
    from app import STATE_MB_PER_SESSION, state_capacity

    budget = replace(settings, session_capacity=500, session_state_mb=4000)
    assert state_capacity(budget) == 4000 // STATE_MB_PER_SESSION
    assert state_capacity(replace(settings, session_capacity=20, session_state_mb=4000)) == 20
    assert state_capacity(replace(settings, session_state_mb=1)) == 1

"""The continuous batcher on the real SmolLM2: a request's answer does not depend on its neighbours.

Greedy answers batched with 7 others equal the same prompts run alone (and `generate()`); a seeded
sampled answer draws the same tokens alone, beside others, or joining a batch already running;
Stop frees a row at the next step while the other rows finish; a request over the token budget is
refused with a message that says what to change; a failing model step reaches every waiting caller
and the service keeps serving. No timing assertions: throughput is measured in bench/batching.py.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import run_at_once

from models.chat import ChatPrompt, eos_ids, generation_kwargs, stream_answer
from models.generation.batcher import BatchLimits, ContinuousBatcher
from models.generation.priority import has_priority, prioritized
from models.generation.requests import (
    GenerationFailed,
    GenerationRequest,
    Sampling,
    TokenBudgetExceeded,
)
from models.generation.service import GenerationService, cumulative_text
from models.qna.prompt import prepare_question

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = json.loads((ROOT / "assets" / "examples" / "qna.json").read_text())
# Three more questions so the bundled examples run in a batch of eight.
NEIGHBOURS = ["What is a tokenizer?", "Why do transformers need positional information?",
              "Name three rivers in Europe."]
NEW_TOKENS = 32

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def chat_prompts(lm) -> list[ChatPrompt]:
    pairs = [tuple(pair) for pair in EXAMPLES] + [(question, "") for question in NEIGHBOURS]
    return [prepare_question(lm, q, c, None, max_new_tokens=NEW_TOKENS, context_tokens=2048).prompt for q, c in pairs]


@pytest.fixture(scope="module")
def prompts(chat_prompts) -> list[tuple[int, ...]]:
    return [tuple(prompt.input_ids) for prompt in chat_prompts]


@pytest.fixture
def batcher(lm):
    batcher = ContinuousBatcher(lm.model, BatchLimits(max_batch_size=8, max_tokens=8192, join_wait_s=0.005))
    yield batcher
    batcher.close()


def request(lm, ids, new_tokens=NEW_TOKENS, sampling=Sampling()) -> GenerationRequest:
    return GenerationRequest(tuple(ids), new_tokens, frozenset(eos_ids(lm.tokenizer, lm.model)), sampling)


def run_alone(batcher, req) -> list[int]:
    return list(batcher.submit(req))


def run_together(batcher, reqs) -> list[list[int]]:
    streams = [batcher.submit(req) for req in reqs]  # all queued before the worker's first pass
    return [list(stream) for stream in streams]


def test_batched_greedy_equals_alone_and_generate_on_the_bundled_examples(lm, batcher, chat_prompts, prompts):
    eos = eos_ids(lm.tokenizer, lm.model)
    reqs = [request(lm, ids) for ids in prompts]
    alone = [run_alone(batcher, req) for req in reqs]
    together = run_together(batcher, reqs)
    assert batcher.max_rows_seen == len(prompts)  # they really shared forward passes
    text = [lm.tokenizer.decode(ids, skip_special_tokens=True) for ids in alone]
    assert [lm.tokenizer.decode(ids, skip_special_tokens=True) for ids in together] == text
    assert together == alone
    for prompt, tokens in zip(chat_prompts[:len(EXAMPLES)], alone, strict=False):  # today's path: generate()
        with torch.no_grad():
            out = lm.model.generate(**generation_kwargs(lm, prompt, max_new_tokens=NEW_TOKENS, temperature=0))
        assert [t for t in out[0, prompt.n_tokens:].tolist() if t not in eos] == tokens
    assert "Paris" in text[0] and "1889" in text[1]


def test_seeded_sampling_is_the_same_alone_beside_others_and_joining_a_running_batch(lm, batcher, prompts):
    sampled = request(lm, prompts[3], sampling=Sampling(temperature=1.2, seed=7))
    alone = run_alone(batcher, sampled)
    neighbours = [request(lm, ids, sampling=Sampling(temperature=1.2, seed=i) if i % 2 else Sampling())
                  for i, ids in enumerate(prompts) if i != 3]
    together = run_together(batcher, [*neighbours[:4], sampled, *neighbours[4:]])
    assert together[4] == alone
    # Join a batch that is already decoding: wait for the neighbours' first tokens, then submit.
    streams = [batcher.submit(req) for req in neighbours]
    firsts = [next(iter(stream)) for stream in streams]
    late = list(batcher.submit(sampled))
    rest = [list(stream) for stream in streams]
    assert late == alone and all(firsts) and all(rest)
    other_seed = run_alone(batcher, request(lm, prompts[3], sampling=Sampling(temperature=1.2, seed=8)))
    assert other_seed != alone  # the seed, not luck, made them equal


class StopDuringPass:
    """The real model; during decode pass `at` it closes `stream` (as a Stop click would, from another
    thread, while that pass runs) and it records how many rows every decode pass had."""

    def __init__(self, model, at: int):
        self.model, self.config, self.at = model, model.config, at
        self.stream, self.rows_per_pass = None, []

    def __call__(self, **kwargs):
        if kwargs["input_ids"].shape[1] == 1:
            self.rows_per_pass.append(kwargs["input_ids"].shape[0])
            if len(self.rows_per_pass) == self.at:
                self.stream.close()
        return self.model(**kwargs)


def test_stop_frees_the_row_at_the_next_step_and_the_other_rows_finish(lm, batcher, prompts):
    reqs = [request(lm, ids, new_tokens=48) for ids in prompts[3:6]]
    expected = [run_alone(batcher, req) for req in reqs]
    model = StopDuringPass(lm.model, at=5)
    stopping = ContinuousBatcher(model, BatchLimits(max_batch_size=8, max_tokens=8192, join_wait_s=0.05))
    try:
        streams = [stopping.submit(req) for req in reqs]
        model.stream = streams[0]
        outputs = [list(stream) for stream in streams]
    finally:
        stopping.close()
    assert streams[0].finish_reason == "stopped"
    assert outputs[0] == expected[0][:6]  # the prefill's token and those of passes 1-5, nothing after
    assert model.rows_per_pass[:5] == [3] * 5 and model.rows_per_pass[5] == 2  # its row left at once
    assert outputs[1:] == expected[1:] and all(s.finish_reason in ("eos", "length") for s in streams[1:])
    assert stopping.running() == 0


def test_a_request_over_the_token_budget_gets_a_clear_message_and_fitting_ones_wait_their_turn(lm, prompts):
    budget = 2 * (max(len(ids) for ids in prompts[:3]) + NEW_TOKENS)
    small = ContinuousBatcher(lm.model, BatchLimits(max_batch_size=8, max_tokens=budget, join_wait_s=0.005))
    try:
        with pytest.raises(TokenBudgetExceeded, match=r"needs \d+ tokens .* at most \d+ .*GENAI_LAB_BATCH_TOKENS"):
            small.submit(request(lm, prompts[0], new_tokens=budget))
        outputs = run_together(small, [request(lm, ids) for ids in prompts[:3]])
        assert all(outputs) and small.max_rows_seen == 2  # the third waited for a free share of the budget
    finally:
        small.close()


def test_the_batch_never_exceeds_its_size_and_every_request_finishes(lm, prompts):
    pair = ContinuousBatcher(lm.model, BatchLimits(max_batch_size=2, max_tokens=8192, join_wait_s=0.005))
    try:
        outputs = run_together(pair, [request(lm, ids, new_tokens=8) for ids in prompts[:5]])
        assert len(outputs) == 5 and all(outputs) and pair.max_rows_seen == 2
    finally:
        pair.close()


def test_a_priority_request_is_admitted_first_and_into_a_full_batch(lm, prompts):
    """The presenter's answer (instructor lane) does not wait for the class's rows: with the one
    row of the batch taken, it goes ahead of two class requests that arrived before it, into a
    row beyond the batch size."""
    single = ContinuousBatcher(lm.model, BatchLimits(max_batch_size=1, max_tokens=8192, join_wait_s=0.005))

    def first_token_time(stream) -> tuple[float, list[int]]:
        tokens = iter(stream)
        first = [next(tokens)]
        return time.perf_counter(), first + list(tokens)

    try:
        # The class's long answer (no end-of-text stop) holds the only row for seconds ...
        running = single.submit(replace(request(lm, prompts[0], new_tokens=96), eos_ids=frozenset()))
        deadline = time.monotonic() + 120
        while single.running() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        # ... while two class requests and then the presenter's arrive.
        waiting = [single.submit(request(lm, ids, new_tokens=24)) for ids in prompts[1:3]]
        presenter = replace(request(lm, prompts[3], new_tokens=24), priority=True)
        (_, held), (b, _), (c, _), (p, answer) = run_at_once(
            first_token_time, [running, *waiting, single.submit(presenter)])
        assert p < b and p < c and single.max_rows_seen == 2 and len(held) == 96
        assert answer == run_alone(single, replace(presenter, priority=False, stop=threading.Event()))
    finally:
        single.close()


def test_the_worker_runs_with_its_own_thread_count_and_later_threads_keep_the_default(lm, batcher, prompts):
    """A batch's matrix products use every core (GENAI_LAB_BATCH_THREADS) while each other model
    job, on threads created later too, keeps its share (torch keeps a count per thread)."""
    default = torch.get_num_threads()
    wide = ContinuousBatcher(lm.model, BatchLimits(threads=default + 1))
    try:
        answer = run_alone(wide, request(lm, prompts[0]))
        assert wide.worker_threads == default + 1
        assert run_at_once(lambda _: torch.get_num_threads(), [0]) == [default] == [torch.get_num_threads()]
        assert answer == run_alone(batcher, request(lm, prompts[0]))  # more threads, same answer
    finally:
        wide.close()


def test_prioritized_marks_every_step_of_a_generator_run_in_fresh_contexts():
    """gradio runs each step of a generator handler in a new copy of the event loop's context."""
    def handler():
        yield has_priority()
        yield has_priority()

    steps = prioritized(handler)()
    assert [contextvars.copy_context().run(next, steps) for _ in range(2)] == [True, True]
    assert not has_priority() and list(handler()) == [False, False]
    assert prioritized(lambda: has_priority())() is True


class FlakyModel:
    """The real model, except that decode passes raise while `broken` is set."""

    def __init__(self, model):
        self.model, self.config, self.broken = model, model.config, threading.Event()

    def __call__(self, **kwargs):
        if self.broken.is_set() and kwargs["input_ids"].shape[1] == 1:
            raise RuntimeError("simulated failure in a decode pass")
        return self.model(**kwargs)


def test_a_failing_step_reaches_every_waiting_caller_and_the_service_keeps_serving(lm, prompts):
    flaky = FlakyModel(lm.model)
    service = GenerationService(BatchLimits(max_batch_size=8, max_tokens=8192, join_wait_s=0.005))
    try:
        flaky.broken.set()
        streams = [service.submit(flaky, request(lm, ids)) for ids in prompts[:3]]
        for stream in streams:
            with pytest.raises(GenerationFailed, match="simulated failure"):
                list(stream)
        flaky.broken.clear()
        assert list(service.submit(flaky, request(lm, prompts[0], new_tokens=4)))
    finally:
        service.close()


def test_streamed_text_grows_token_by_token_and_never_shows_half_a_character(lm):
    text = "Paris 🗼 est très belle. مرحبا"
    tokens = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = list(cumulative_text(lm.tokenizer, tokens))
    assert pieces[-1] == lm.tokenizer.decode(tokens, skip_special_tokens=True)
    assert all(b.startswith(a) for a, b in zip(pieces, pieces[1:], strict=False))
    assert not any("\ufffd" in piece for piece in pieces)


def test_stream_answer_through_the_service_gives_todays_text_and_closing_it_stops_the_request(lm, chat_prompts):
    service = GenerationService(BatchLimits(max_batch_size=8, max_tokens=8192, join_wait_s=0.005))
    served = service.serve(lm)
    try:
        for kwargs in ({}, {"temperature": 1.2, "seed": 7}):  # greedy, and a seed's sampled answer
            today = list(stream_answer(lm, chat_prompts[0], max_new_tokens=NEW_TOKENS, **kwargs))
            batched = list(stream_answer(served, chat_prompts[0], max_new_tokens=NEW_TOKENS, **kwargs))
            assert batched[-1] == today[-1]
            assert all(b.startswith(a) for a, b in zip(batched, batched[1:], strict=False))
        halt = threading.Event()
        answer = stream_answer(served, chat_prompts[3], max_new_tokens=200, stop=halt)
        next(answer)
        answer.close()  # what gradio does to a handler's generator on Stop or a closed tab
        assert halt.is_set()  # the request's stop event: its row leaves at the next step (test above)
        assert list(stream_answer(served, chat_prompts[0], max_new_tokens=4))
    finally:
        service.close()
    assert GenerationService(enabled=False).serve(lm) is lm  # batching off: today's path


def test_two_students_asking_the_qna_bot_at_once_share_one_batch(lm, registry, settings):
    from tabs import qna as qna_tab

    service = GenerationService(BatchLimits(max_batch_size=8, max_tokens=8192, join_wait_s=0.5))
    paris = "Paris is the capital and largest city of France."
    questions = ["What is the capital of France?", "Which city is the largest in France?"]
    try:
        answers = run_at_once(lambda q: qna_tab.answer_text(registry, settings, q, paris, service), questions)
        assert service.batcher(lm.model).max_rows_seen == 2
    finally:
        service.close()
    assert all("Paris" in text for text in answers)

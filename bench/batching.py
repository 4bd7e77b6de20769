"""Benchmark: batched generation (models/generation) against today's one-`generate()`-per-request path.

Every comparison runs its variants interleaved in one run (A, B, A, B, ...), so a machine shared
with other work slows both alike; figures are medians of the rounds.

1. engines (in process, the app's torch threads): 8 different QnA questions decoded greedily by
   - `sequential`: one `generate()` after another (today's cost of a request alone),
   - `padded_generate`: one `generate()` over the left-padded batch of 8 (the upper bound of
     batching without joining),
   - `batcher`: the service's continuous batcher, all 8 submitted at once,
   - `batcher_every_core`: the same with its worker on every core, as the app runs it
     (GENAI_LAB_BATCH_THREADS),
   - `transformers_cb`: transformers' continuous-batching manager (paged cache, sdpa), with the
     best of a small grid of page size x tokens per step measured first;
   aggregate tokens/s, and whether each engine's greedy text equals the sequential one; then
   `sizes`: 16 questions at once through batches of 4, 8 and 16 rows (the batch-size default).
2. agreement: greedy answers of >= 50 prompts alone and batched with 7 others: the share that is
   identical (fp32 padding can in principle flip a near-tie).
3. alone: one student alone through `stream_answer`, batched service vs today's path: tokens/s
   and time to the first token.
4. app: the app as its own process twice (GENAI_LAB_BATCHING=1 and =0): 8 different questions
   through /qna_answer one by one and all at once (wall time / sum), then bench/load.py's levels
   (8/16/32 sessions, half QnA, half document chat): sessions/min, p50/p95, failures, and the
   server's RSS at its peak during the level and once the sessions have ended.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time

from bench.server import ROOT, running_app

QUESTIONS = [
    "What is the capital of France?",
    "Explain in one sentence what a large language model is.",
    "Give me three tips for learning Python.",
    "Why is the sky blue?",
    "What does a tokenizer do in a language model?",
    "How do plants make their food?",
    "Describe what a lighthouse keeper does.",
    "What are the benefits of regular exercise?",
]
ENGINE_NEW_TOKENS = 64
ENGINE_ROUNDS = 2
AGREEMENT_NEW_TOKENS = 48
ALONE_NEW_TOKENS = 96
ALONE_ROUNDS = 3
CB_GRID = ((32, 128), (64, 256), (256, 512))  # (page size, max tokens per step)
SIZES = (4, 8, 16)
APP_ROUNDS = 2
LEVELS = (8, 16, 32)
# A machine shared with other work may take longer than httpx's 5 s to accept a request; a session
# that still fails or outlives the level's deadline is counted as failed or hung.
CLIENT_TIMEOUT_S, LEVEL_DEADLINE_S = 300, 1200


def _chat_prompts(lm, questions, max_new_tokens, contexts=None):
    from models.qna.prompt import prepare_question

    contexts = contexts or [""] * len(questions)
    return [prepare_question(lm, q, c, None, max_new_tokens=max_new_tokens, context_tokens=2048).prompt
            for q, c in zip(questions, contexts, strict=True)]


def _eos(lm) -> set[int]:
    from models.chat import eos_ids

    return eos_ids(lm.tokenizer, lm.model)


def _strip(tokens, eos) -> list[int]:
    return [t for t in tokens if t not in eos]


# ---- 1. engines ------------------------------------------------------------------------------
def _sequential(lm, prompts, new_tokens):
    import torch

    from models.chat import generation_kwargs

    outputs = []
    for prompt in prompts:
        with torch.no_grad():
            out = lm.model.generate(**generation_kwargs(lm, prompt, max_new_tokens=new_tokens, temperature=0))
        outputs.append(_strip(out[0, prompt.n_tokens:].tolist(), _eos(lm)))
    return outputs


def _padded_generate(lm, prompts, new_tokens):
    import torch

    width = max(p.n_tokens for p in prompts)
    pad = lm.tokenizer.pad_token_id or lm.tokenizer.eos_token_id
    ids = torch.tensor([[pad] * (width - p.n_tokens) + p.input_ids for p in prompts])
    mask = torch.tensor([[0] * (width - p.n_tokens) + [1] * p.n_tokens for p in prompts])
    with torch.no_grad():
        out = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                                pad_token_id=pad)
    eos = _eos(lm)
    outputs = []
    for row in out[:, width:].tolist():
        ended = next((i for i, t in enumerate(row) if t in eos), len(row))
        outputs.append(row[:ended])
    return outputs


def _batcher_run(batcher, lm, prompts, new_tokens):
    from models.generation.requests import GenerationRequest

    eos = frozenset(_eos(lm))
    streams = [batcher.submit(GenerationRequest(tuple(p.input_ids), new_tokens, eos)) for p in prompts]
    return [list(stream) for stream in streams]


def _cb_manager(lm, new_tokens, page_size, step_tokens, rows):
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=sorted(_eos(lm)),
                              pad_token_id=lm.tokenizer.pad_token_id or lm.tokenizer.eos_token_id)
    blocks = rows * (-(-(512 + new_tokens) // page_size) + 1)  # every row's prompt + answer fits
    cb = ContinuousBatchingConfig(page_size=page_size, num_blocks=blocks, max_batch_tokens=step_tokens,
                                  max_requests_per_batch=rows, use_async_batching=False, auto_switch_to_flash=False)
    manager = lm.model.init_continuous_batching(generation_config=config, continuous_batching_config=cb)
    manager.start()
    return manager


def _cb_run(manager, lm, prompts, new_tokens):
    ids = manager.add_requests([p.input_ids for p in prompts], max_new_tokens=new_tokens)
    done = {}
    while len(done) < len(ids):
        result = manager.get_result(timeout=1)
        if result is not None and result.is_finished():
            done[result.request_id] = result
        elif result is None and not manager.is_running():
            raise RuntimeError("transformers' continuous batching stopped")
    eos = _eos(lm)
    return [_strip(done[i].generated_tokens, eos) for i in ids]


def _progress(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)  # long runs on a shared machine: show where they are


def _timed(run):
    start = time.perf_counter()
    outputs = run()
    return time.perf_counter() - start, outputs


def engines(lm) -> dict:
    import torch

    from models.generation.batcher import BatchLimits, ContinuousBatcher

    prompts = _chat_prompts(lm, QUESTIONS, ENGINE_NEW_TOKENS)
    n = ENGINE_NEW_TOKENS
    from models.hardware import usable_cores

    batcher = ContinuousBatcher(lm.model, BatchLimits(max_batch_size=len(prompts), max_tokens=16384))
    # The app's worker takes every core (GENAI_LAB_BATCH_THREADS); the other engines run at the
    # process's threads, as the app runs each model job.
    wide = ContinuousBatcher(lm.model, BatchLimits(max_batch_size=len(prompts), max_tokens=16384,
                                                   threads=usable_cores()))
    # transformers' manager: a small grid first, then its best setting joins the interleaved rounds.
    grid = {}
    for page_size, step_tokens in CB_GRID:
        manager = _cb_manager(lm, n, page_size, step_tokens, len(prompts))
        try:
            seconds, outputs = _timed(lambda m=manager: _cb_run(m, lm, prompts, n))
        finally:
            manager.stop(block=True, timeout=30)
        grid[f"page{page_size}_step{step_tokens}"] = sum(map(len, outputs)) / seconds
    best = max(CB_GRID, key=lambda g: grid[f"page{g[0]}_step{g[1]}"])
    manager = _cb_manager(lm, n, *best, len(prompts))
    variants = {
        "sequential": lambda: _sequential(lm, prompts, n),
        "padded_generate": lambda: _padded_generate(lm, prompts, n),
        "batcher": lambda: _batcher_run(batcher, lm, prompts, n),
        "batcher_every_core": lambda: _batcher_run(wide, lm, prompts, n),
        "transformers_cb": lambda: _cb_run(manager, lm, prompts, n),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    texts: dict[str, list] = {}
    try:
        _batcher_run(batcher, lm, prompts[:1], 4)  # warm-up
        _batcher_run(wide, lm, prompts[:1], 4)
        for _ in range(ENGINE_ROUNDS):
            for name, run in variants.items():
                seconds, outputs = _timed(run)
                rates[name].append(sum(map(len, outputs)) / seconds)
                texts[name] = outputs
    finally:
        manager.stop(block=True, timeout=30)
        batcher.close()
        wide.close()
    result = {"threads": torch.get_num_threads(), "batcher_every_core_threads": usable_cores(),
              "requests": len(prompts), "new_tokens": n,
              "transformers_cb_grid_tok_s": grid, "transformers_cb_setting": f"page{best[0]}_step{best[1]}"}
    for name, values in rates.items():
        result[f"{name}_tok_s"] = statistics.median(values)
        result[f"{name}_same_greedy_as_sequential"] = texts[name] == texts["sequential"]
    result["batcher_vs_sequential"] = result["batcher_tok_s"] / result["sequential_tok_s"]
    result["batcher_vs_transformers_cb"] = result["batcher_tok_s"] / result["transformers_cb_tok_s"]
    result["batcher_vs_padded_generate"] = result["batcher_tok_s"] / result["padded_generate_tok_s"]
    result["batcher_every_core_vs_sequential"] = result["batcher_every_core_tok_s"] / result["sequential_tok_s"]
    return result


def sizes(lm) -> dict:
    """16 questions at once through batchers of 4, 8 and 16 rows (GENAI_LAB_BATCH_SIZE), their worker
    on every core as in the app: aggregate tokens/s and when the last answer ends, interleaved rounds."""
    from models.generation.batcher import BatchLimits, ContinuousBatcher
    from models.hardware import usable_cores

    prompts = _chat_prompts(lm, QUESTIONS * 2, ENGINE_NEW_TOKENS)
    runs: dict[int, list[tuple[float, float]]] = {size: [] for size in SIZES}
    for _ in range(ENGINE_ROUNDS):
        for size in SIZES:
            batcher = ContinuousBatcher(lm.model, BatchLimits(max_batch_size=size, max_tokens=65536,
                                                                     threads=usable_cores()))
            try:
                seconds, outputs = _timed(lambda b=batcher: _batcher_run(b, lm, prompts, ENGINE_NEW_TOKENS))
            finally:
                batcher.close()
            runs[size].append((sum(map(len, outputs)) / seconds, seconds))
            _progress("size", size, runs[size][-1])
    return {f"rows{size}": {"tok_s": statistics.median(r[0] for r in values),
                            "last_answer_s": statistics.median(r[1] for r in values)}
            for size, values in runs.items()} | {"requests": len(prompts)}


# ---- 2. agreement ----------------------------------------------------------------------------
def agreement_prompts(lm) -> list:
    """60 prompts of varied length: the bundled examples, the RAG eval questions bare, and the same
    questions about the opening of the corpus document that answers them."""
    examples = json.loads((ROOT / "assets" / "examples" / "qna.json").read_text())
    questions = json.loads((ROOT / "assets" / "eval" / "rag_questions.json").read_text())["questions"]
    corpus = ROOT / "assets" / "corpus"
    pairs = [tuple(e) for e in examples]
    pairs += [(q["question"], "") for q in questions]
    pairs += [(q["question"], (corpus / q["document"]).read_text()[:700]) for q in questions]
    return _chat_prompts(lm, [q for q, _ in pairs], AGREEMENT_NEW_TOKENS, [c for _, c in pairs])


def agreement(lm) -> dict:
    from models.generation.batcher import BatchLimits, ContinuousBatcher

    prompts = agreement_prompts(lm)
    batcher = ContinuousBatcher(lm.model, BatchLimits(max_batch_size=8, max_tokens=16384))
    n = AGREEMENT_NEW_TOKENS
    try:
        alone = [_batcher_run(batcher, lm, [p], n)[0] for p in prompts]
        together = []
        for start in range(0, len(prompts), 8):
            together += _batcher_run(batcher, lm, prompts[start:start + 8], n)
    finally:
        batcher.close()
    same = sum(a == b for a, b in zip(alone, together, strict=True))
    first_diff = [next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
                  for a, b in zip(alone, together, strict=True) if a != b]
    return {"prompts": len(prompts), "new_tokens": n, "identical": same, "agreement_rate": same / len(prompts),
            "first_differing_token_of_the_others": first_diff}


# ---- 3. one student alone --------------------------------------------------------------------
def alone(lm) -> dict:
    from bench.in_process import offline_settings
    from models.chat import stream_answer
    from models.generation.service import GenerationService

    prompt = _chat_prompts(lm, ["Explain what a transformer language model is, in a few sentences."],
                           ALONE_NEW_TOKENS)[0]
    eos_off = lm.model.generation_config.eos_token_id
    lm.model.generation_config.eos_token_id = None  # same number of tokens on both paths
    service = GenerationService.from_settings(offline_settings())  # the app's own
    runs: dict[str, list[tuple[float, float]]] = {"today": [], "batched": []}

    def measure(name: str, served) -> None:
        start, first, count = time.perf_counter(), None, 0
        for _ in stream_answer(served, prompt, max_new_tokens=ALONE_NEW_TOKENS):
            first = first or time.perf_counter() - start
            count += 1
        runs[name].append((ALONE_NEW_TOKENS / (time.perf_counter() - start), first))

    try:
        for _ in range(ALONE_ROUNDS):
            measure("today", lm)
            measure("batched", service.serve(lm))
    finally:
        lm.model.generation_config.eos_token_id = eos_off
        service.close()
    result = {}
    for name, values in runs.items():
        result[f"{name}_tok_s"] = statistics.median(v[0] for v in values)
        result[f"{name}_first_token_s"] = statistics.median(v[1] for v in values)
    result["tok_s_ratio"] = result["batched_tok_s"] / result["today_tok_s"]
    result["first_token_ratio"] = result["today_first_token_s"] / result["batched_first_token_s"]
    return result


# ---- 4. the app, batched and not -------------------------------------------------------------
def _ask(url: str, question: str, failures: list[str]) -> float:
    """Seconds for one /qna_answer; a failure is recorded (and counts as no time) instead of raised."""
    from gradio_client import Client

    start = time.perf_counter()
    try:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": CLIENT_TIMEOUT_S})
        client.predict(question, "", api_name="/qna_answer")
    except Exception as exc:  # reported in the figures
        failures.append(f"{type(exc).__name__}: {exc}"[:200])
    return time.perf_counter() - start


def _eight(url: str) -> dict:
    failures: list[str] = []
    one_by_one = sum(_ask(url, q, failures) for q in QUESTIONS)
    threads = [threading.Thread(target=_ask, args=(url, q, failures)) for q in QUESTIONS]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    together = time.perf_counter() - start
    return {"one_by_one_sum_s": one_by_one, "at_once_wall_s": together, "ratio": together / one_by_one,
            "failed": len(failures), "first_failure": failures[0] if failures else ""}


class _PeakRss:
    """Samples a process's RSS every 0.5 s while a level runs."""

    def __init__(self, pid: int):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(pid), 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, self.proc.memory_info().rss / 2**20)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def app(eight_rounds: int = APP_ROUNDS) -> dict:
    """Both apps run at once (each idle while the other is measured), so their rounds interleave."""
    import contextlib

    from bench import load

    load.FILES.mkdir(parents=True, exist_ok=True)
    results: dict = {"batched": {}, "today": {}}
    with contextlib.ExitStack() as stack:
        apps = {}
        for name, flag in (("batched", "1"), ("today", "0")):
            env = load._memory_env({"GENAI_LAB_BATCHING": flag}, f"batching-{name}")
            apps[name] = stack.enter_context(running_app(env))
            load._warm(apps[name][0])
        for round_no in range(1, eight_rounds + 1):
            for name, (url, _) in apps.items():
                results[name][f"round{round_no}_eight_questions"] = _eight(url)
                _progress(name, round_no, results[name][f"round{round_no}_eight_questions"])
        first = 0
        for sessions in LEVELS:
            for name, (url, proc) in apps.items():
                with _PeakRss(proc.pid) as peak:
                    level = load.run_level(url, sessions, first, client_timeout_s=CLIENT_TIMEOUT_S,
                                           deadline_s=LEVEL_DEADLINE_S)
                level["rss_peak_mib"] = round(peak.peak)
                results[name][f"sessions_{sessions}"] = level
                _progress(name, sessions, level)
                first += sessions
        for name, (_, proc) in apps.items():
            results[name]["rss_sessions_ended_mib"] = round(load._settled(proc)[0])
    for name in results if eight_rounds else ():
        results[name]["eight_questions_ratio"] = statistics.median(
            results[name][f"round{r}_eight_questions"]["ratio"] for r in range(1, eight_rounds + 1))
    results["sessions_per_min_8_batched_vs_today"] = (results["batched"]["sessions_8"]["sessions_per_min"]
                                                      / results["today"]["sessions_8"]["sessions_per_min"])
    return results


PARTS = ("engines", "sizes", "agreement", "alone", "app")


def main(parts=PARTS) -> dict:
    import torch

    from config import Settings
    from models.hardware import intra_op_threads
    from models.registry import ModelRegistry

    settings = Settings.from_env()
    torch.set_num_threads(intra_op_threads(settings))  # as app.py's configure_torch does
    lm = ModelRegistry(settings).chat_model() if set(parts) - {"app"} else None
    results = {}
    for part in parts:
        start = time.perf_counter()
        results[part] = globals()[part](lm) if part != "app" else app()
        results[part]["seconds"] = round(time.perf_counter() - start)
    return results


if __name__ == "__main__":
    from bench.run_all import flatten

    for name, value in flatten(main(tuple(sys.argv[1:]) or PARTS)):
        print(f"{name:60s} {value}")

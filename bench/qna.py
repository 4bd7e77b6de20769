"""Benchmark of the foundation and the QnA bot, every figure a ratio measured in one run.

- start-up: `python app.py` to the first HTTP 200 (models lazy) vs a bare
  `import gradio, torch, transformers` in a fresh interpreter;
- chat model load time from the conversion cache (fresh process);
- QnA streaming tokens/s vs a raw `model.generate` on the same prompt and settings
  (goal >= 0.9), and the time to the first streamed token, at the torch thread count the app
  uses (cores / model jobs), and again at one thread per core: there, generate() running in the
  streamer's worker thread was measured at about half the raw speed on a 2-core Xeon (its two
  OpenMP threads share both cores with the thread reading the stream, so every parallel region
  waits for a descheduled thread), one more reason the app runs one thread per job on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.server import free_port

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Explain what a transformer language model is, in a few sentences."
MAX_NEW_TOKENS = 96


def _python(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def startup_seconds() -> dict:
    bare = _python("import gradio, torch, transformers")
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GENAI_LAB_WARMUP": "0", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = start + 180
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        app = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"bare_import_s": bare, "app_first_200_s": app, "startup_ratio": app / bare}


def model_load_seconds() -> float:
    code = ("import time; from config import Settings; from models.registry import ModelRegistry; "
            "r = ModelRegistry(Settings.from_env()); import transformers; t = time.perf_counter(); "
            "r.chat_model(); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    return float(out.stdout.strip().splitlines()[-1])


def generation_speed(lm) -> dict:
    import torch

    from models.chat import generation_kwargs, stream_answer
    from models.qna.prompt import prepare_question

    prepared = prepare_question(lm, QUESTION, "", None, max_new_tokens=MAX_NEW_TOKENS, context_tokens=2048)
    # Never stop early on EOS, so both sides generate exactly the same number of tokens.
    lm.model.generation_config.eos_token_id = None
    raw_kwargs = generation_kwargs(lm, prepared.prompt, max_new_tokens=MAX_NEW_TOKENS, temperature=0)
    with torch.no_grad():
        lm.model.generate(**{**raw_kwargs, "max_new_tokens": 4})  # warm-up
    raw_runs, ours_runs, first_token = [], [], []
    for _ in range(3):
        start = time.perf_counter()
        with torch.no_grad():
            out = lm.model.generate(**raw_kwargs)
        n_tokens = out.shape[1] - len(prepared.prompt.input_ids)
        raw_runs.append(n_tokens / (time.perf_counter() - start))
        # With EOS disabled, the streamed run generates the same n_tokens (re-tokenizing the
        # decoded text would not count them exactly).
        start, first = time.perf_counter(), None
        for _ in stream_answer(lm, prepared.prompt, max_new_tokens=MAX_NEW_TOKENS):
            first = first or time.perf_counter() - start
        ours_runs.append(n_tokens / (time.perf_counter() - start))
        first_token.append(first)
    raw, ours = max(raw_runs), max(ours_runs)
    return {"threads": torch.get_num_threads(), "raw_generate_tok_s": raw, "qna_stream_tok_s": ours,
            "qna_vs_raw_ratio": ours / raw, "time_to_first_token_s": min(first_token)}


def main() -> dict:
    import torch

    from config import Settings
    from models.hardware import intra_op_threads, usable_cores
    from models.registry import ModelRegistry

    results = {}
    results.update(startup_seconds())
    results["chat_model_load_from_cache_s"] = model_load_seconds()
    settings = Settings.from_env()
    lm = ModelRegistry(settings).chat_model()
    torch.set_num_threads(intra_op_threads(settings))  # as app.py's configure_torch does
    results.update(generation_speed(lm))
    torch.set_num_threads(usable_cores())
    results["one_thread_per_core"] = generation_speed(lm)
    return results


if __name__ == "__main__":
    from bench.run_all import flatten

    for name, value in flatten(main()):
        print(f"{name:40s} {value:.3f}")

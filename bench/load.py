"""Load: 8, 16 and 32 concurrent gradio_client sessions asking the QnA bot and the document chat.

The app runs as its own process on 127.0.0.1 with a bounded queue. Each session is a new
Client (its own session hash) sending one request; every request must either complete or
get gradio's clear "queue is full, try again" answer — never an exception or a hang. The
run is bounded in count (56 sessions) and time (a deadline per level), and stops by itself.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (8, 16, 32)
QUEUE_SIZE = 16
LEVEL_DEADLINE_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def _ask_qna(client):
    return client.predict("What is the capital of France?", "Paris is the capital of France.",
                          api_name="/qna_answer")


def _ask_docs(client):
    return client.predict("What does attention let a token do?", api_name="/rag_ask")


def _session(url: str, index: int, outcomes: list, lock: threading.Lock) -> None:
    from gradio_client import Client

    ask = _ask_qna if index % 2 == 0 else _ask_docs
    start = time.perf_counter()
    try:
        client = Client(url, verbose=False)
        ask(client)
        kind = "completed"
    except Exception as exc:  # classified, never raised: the bench reports them
        kind = "rejected" if "queue is full" in str(exc).lower() else f"failed: {type(exc).__name__}: {exc}"
    with lock:
        outcomes.append((kind, time.perf_counter() - start, ask.__name__))


def run_level(url: str, sessions: int) -> dict:
    outcomes: list = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_session, args=(url, i, outcomes, lock), daemon=True) for i in range(sessions)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + LEVEL_DEADLINE_S
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.perf_counter()))
    latencies = sorted(t for kind, t, _ in outcomes if kind == "completed")
    failures = [kind for kind, _, _ in outcomes if kind.startswith("failed")]
    return {
        "completed": len(latencies),
        "rejected_busy": sum(1 for kind, _, _ in outcomes if kind == "rejected"),
        "failed": len(failures),
        "hung": sessions - len(outcomes),
        "p50_s": statistics.median(latencies) if latencies else float("nan"),
        "p95_s": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan"),
        "first_failure": failures[0] if failures else "",
    }


def main() -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GENAI_LAB_QUEUE_SIZE": str(QUEUE_SIZE),
           "HF_HUB_OFFLINE": "1", "GENAI_LAB_DATA_DIR": str(ROOT / "bench" / "out" / "load-data")}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict = {"queue_size": QUEUE_SIZE}
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        from gradio_client import Client

        warm = Client(url, verbose=False)  # load both models before measuring memory
        _ask_qna(warm)
        _ask_docs(warm)
        results["rss_before_mib"] = _rss_mib(proc.pid)
        for sessions in LEVELS:
            results[f"sessions_{sessions}"] = run_level(url, sessions)
        time.sleep(10)  # let sessions end and their state be released
        results["rss_after_mib"] = _rss_mib(proc.pid)
        results["rss_growth_mib"] = results["rss_after_mib"] - results["rss_before_mib"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return results


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key:20s} {value}")

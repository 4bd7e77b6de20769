"""Load: 8, 16 and 32 concurrent gradio_client sessions asking the QnA bot and the document chat.

The app runs as its own process on 127.0.0.1. Each session is a new Client (its own session
hash): even sessions ask the QnA bot, odd ones upload a small file of their own and ask the
document chat about it. Every request must either complete or get gradio's clear "queue is
full, try again" answer — never an exception or a hang. The run is bounded in count and time
(a deadline per level) and stops by itself.

1. Settings sweep: model jobs at once x torch threads. For each, one student alone (a QnA
   session, then a document session) and 8 at once (p50, p95, sessions per minute), so the
   defaults in config.py are chosen from measurements.
2. Levels 8, 16, 32 with the app's defaults (queue size included), twice: completed /
   rejected / failed / hung, p50 / p95 latency, sessions per minute; server RSS and open file
   descriptors after warm-up and after each round's sessions have ended (session TTL, grace
   period and housekeeping shortened so that "ended" happens within the run; in production the
   same code runs with a 1 h TTL and a 10 min grace period).
3. Heap arenas: the same four bursts of 16 sessions with glibc's default malloc arenas and
   with the app's cap, RSS after each burst has ended, to show where memory growth came from.
"""

from __future__ import annotations

import statistics
import threading
import time

from bench.server import ROOT, running_app
from models.hardware import usable_cores

LEVELS = (8, 16, 32)
SWEEP_SESSIONS = 8
CORES = usable_cores()
# (GENAI_LAB_MODEL_CONCURRENCY, GENAI_LAB_TORCH_THREADS): one or two jobs, one thread or one per core
SWEEP = ((1, CORES), (1, 1), (2, 1), (2, CORES))
ARENA_BURSTS, ARENA_SESSIONS = 4, 16
LEVEL_DEADLINE_S = 420
SESSION_TTL_S, HOUSEKEEPING_S = 20, 5
SETTLE_S = SESSION_TTL_S + 3 * HOUSEKEEPING_S  # every session expired, swept, store reopened, heap trimmed
OUT = ROOT / "bench" / "out"
FILES = OUT / "load-files"


def _process(pid: int) -> tuple[float, int]:
    import psutil

    proc = psutil.Process(pid)
    return proc.memory_info().rss / 2**20, proc.num_fds()


def _ask_qna(client, index: int):
    return client.predict("What is the capital of France?", "Paris is the capital of France.",
                          api_name="/qna_answer")


def _ask_docs(client, index: int):
    from gradio_client import handle_file

    path = FILES / f"notes-{index}.txt"
    path.write_text(f"Session {index} notes. The lab's code word for session {index} is heron-{index}. "
                    "Attention lets a token weigh every other token of the context when it is encoded.\n")
    client.predict([handle_file(str(path))], 128, 16, "tokens", api_name="/rag_ingest")
    return client.predict(f"What is the code word for session {index}?", api_name="/rag_ask")


def _session(url: str, index: int, outcomes: list, lock: threading.Lock, timeout_s: float | None = None) -> None:
    from gradio_client import Client

    ask = _ask_qna if index % 2 == 0 else _ask_docs
    start = time.perf_counter()
    try:
        ask(Client(url, verbose=False, httpx_kwargs={"timeout": timeout_s} if timeout_s else None), index)
        kind = "completed"
    except Exception as exc:  # classified, never raised: the bench reports them
        kind = "rejected" if "queue is full" in str(exc).lower() else f"failed: {type(exc).__name__}: {exc}"
    with lock:
        outcomes.append((kind, time.perf_counter() - start))


def run_level(url: str, sessions: int, first_index: int = 0, *, client_timeout_s: float | None = None,
              deadline_s: float = LEVEL_DEADLINE_S) -> dict:
    """`sessions` at once; `client_timeout_s` replaces httpx's 5 s for each HTTP call of a session (a
    machine shared with other work can take longer than that to accept a request)."""
    outcomes: list = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_session, args=(url, first_index + i, outcomes, lock, client_timeout_s),
                                daemon=True) for i in range(sessions)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    deadline = start + deadline_s
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.perf_counter()))
    wall = time.perf_counter() - start
    latencies = sorted(t for kind, t in outcomes if kind == "completed")
    failures = [kind for kind, _ in outcomes if kind.startswith("failed")]
    return {
        "completed": len(latencies),
        "rejected_busy": sum(1 for kind, _ in outcomes if kind == "rejected"),
        "failed": len(failures),
        "hung": sessions - len(outcomes),
        "p50_s": round(statistics.median(latencies), 1) if latencies else float("nan"),
        "p95_s": round(statistics.quantiles(latencies, n=20)[-1], 1) if len(latencies) > 1 else float("nan"),
        "sessions_per_min": round(60 * len(latencies) / wall, 1),
        "first_failure": failures[0][:200] if failures else "",
    }


def _warm(url: str) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)  # loads both models before anything is measured
    _ask_qna(client, -2)
    _ask_docs(client, -1)


def sweep() -> dict:
    results = {}
    for concurrency, threads in SWEEP:
        env = {"GENAI_LAB_MODEL_CONCURRENCY": str(concurrency), "GENAI_LAB_TORCH_THREADS": str(threads),
               "GENAI_LAB_QUEUE_SIZE": "64", "GENAI_LAB_DATA_DIR": str(OUT / "load-sweep")}
        with running_app(env) as (url, _):
            _warm(url)
            alone_qna, alone_docs = run_level(url, 1, 0), run_level(url, 1, 1)
            level = run_level(url, SWEEP_SESSIONS, 2)
        results[f"jobs{concurrency}_threads{threads}"] = {
            "alone_qna_s": alone_qna["p50_s"], "alone_docs_s": alone_docs["p50_s"],
            **{f"{SWEEP_SESSIONS}_at_once.{key}": value for key, value in level.items()}}
    return results


def _memory_env(extra: dict[str, str], name: str) -> dict[str, str]:
    return {"GENAI_LAB_DATA_DIR": str(OUT / name), "GENAI_LAB_SESSION_TTL_S": str(SESSION_TTL_S),
            "GENAI_LAB_SESSION_GRACE_S": str(SESSION_TTL_S), "GENAI_LAB_HOUSEKEEPING_S": str(HOUSEKEEPING_S),
            **extra}


def _settled(proc) -> tuple[float, int]:
    """RSS (MiB) and open fds once every ended session has expired and been swept."""
    time.sleep(SETTLE_S)
    return _process(proc.pid)


def levels_and_memory() -> dict:
    results: dict = {}
    with running_app(_memory_env({}, "load-data")) as (url, proc):
        _warm(url)
        rss, fds = _settled(proc)
        memory = {"rss_after_warmup_mib": round(rss), "fds_after_warmup": fds}
        first = 0
        for round_no in (1, 2):
            for sessions in LEVELS:
                results[f"round{round_no}_sessions_{sessions}"] = run_level(url, sessions, first)
                first += sessions
            rss, fds = _settled(proc)
            memory.update({f"rss_round{round_no}_sessions_ended_mib": round(rss),
                           f"fds_round{round_no}_sessions_ended": fds})
        memory["rss_growth_mib"] = memory["rss_round2_sessions_ended_mib"] - memory["rss_after_warmup_mib"]
    results["memory"] = memory
    return results


def heap_arenas() -> dict:
    """RSS after each of four ended bursts, glibc's default arenas against the app's cap."""
    results = {}
    for label, extra in {"glibc_default": {"GENAI_LAB_HEAP_ARENAS": "0"}, "app_default": {}}.items():
        with running_app(_memory_env(extra, f"load-arenas-{label}")) as (url, proc):
            _warm(url)
            rss = [_settled(proc)[0]]
            for burst in range(ARENA_BURSTS):
                run_level(url, ARENA_SESSIONS, 1000 * (burst + 1))
                rss.append(_settled(proc)[0])
        results[label] = {"rss_warm_mib": round(rss[0]),
                          **{f"rss_after_burst{i}_mib": round(r) for i, r in enumerate(rss[1:], 1)},
                          "growth_mib": round(rss[-1] - rss[0])}
    return results


def main() -> dict:
    FILES.mkdir(parents=True, exist_ok=True)
    return {"sweep": sweep(), **levels_and_memory(), "heap_arenas": heap_arenas()}


if __name__ == "__main__":
    from bench.run_all import flatten

    for key, value in flatten(main()):
        print(f"{key:50s} {value}")

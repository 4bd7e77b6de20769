"""Abuse: the attacks of issue 14, sent over HTTP against a live app while 8 normal sessions work.

The app runs as its own process (bench/server.running_app) behind one trusted proxy hop, so each
client has its own address (X-Forwarded-For, as on a Space): the attacker is 10.66.0.1, normal
students 10.0.0.x. First 8 normal sessions alone (the baseline), then the same 8 while every attack
repeats in its own thread until they are done. Normal sessions are bench/load's: even ones ask the
QnA bot, odd ones upload a note and ask the document chat about it.

Attacks (each one request, repeated): a 360,000-character made-up question in the document chat's
history; 400 made-up QnA exchanges; the attention layer spec "0-20000000"; 3,900 characters of
astral-plane text to /decode (about 15,000 tokens) and to the quantized comparison; contrastive
search with 20 candidates on a long prompt; rag_ask with top_k=1e9, threshold -1 and MMR; a DOCX
of 300,000 empty paragraphs; 2 MB of text without spaces; a 25 MB upload; the queue's back door
(POST /gradio_api/run/qna_answer); fresh sessions minted to index a document each.

Reported: normal sessions completed (alone and under attack) and their p50/p95, each attack's
count, how many got an answer or a clear message, and its slowest reply; the app's RSS before
(after a warm-up that sends every attack once, so first-use model loads are not counted as
growth) and after; whether the app process restarted or stopped serving.
"""

from __future__ import annotations

import io
import statistics
import threading
import time
import zipfile

from bench.load import FILES as LOAD_FILES
from bench.load import OUT, _ask_docs, _ask_qna, _process
from bench.server import running_app

NORMAL_SESSIONS = 8
ROUND_DEADLINE_S = 600
CLIENT_TIMEOUT_S = 300
ATTACKER = "10.66.0.1"
FILES = OUT / "abuse-files"
ASTRAL = "𝔄𝔅ℭ𝔇𝔈𝔉𝔊ℌ🗼🥐" * 390  # 3,900 characters, ~15,000 SmolLM2 tokens
GENERATIVE = "Generative (SmolLM2 writes the answer)"


def _client(url: str, address: str):
    from gradio_client import Client

    return Client(url, verbose=False, headers={"X-Forwarded-For": address},
                  httpx_kwargs={"timeout": CLIENT_TIMEOUT_S})


def _message(role: str, text: str) -> dict:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _docx_bomb(paragraphs: int) -> bytes:
    """python-docx's own blank document with `paragraphs` empty paragraphs in its body (~3 KB zipped)."""
    import docx

    blank = io.BytesIO()
    docx.Document().save(blank)
    out = io.BytesIO()
    with zipfile.ZipFile(blank) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "word/document.xml":
                data = data.replace(b"<w:body>", b"<w:body>" + b"<w:p/>" * paragraphs, 1)
            dst.writestr(item, data)
    return out.getvalue()


def _upload(client, name: str, data: bytes):
    from gradio_client import handle_file

    path = FILES / name
    if not path.exists():
        path.write_bytes(data)
    return client.predict([handle_file(str(path))], 128, 16, "tokens", api_name="/rag_ingest")


def _report_says_no(result) -> bool:
    """An ingest report whose rows all refused the file with a message (never 'added')."""
    rows = (result[0] or {}).get("data", []) if isinstance(result[0], dict) else []
    return bool(rows) and all(row[1] == "error" and row[5] for row in rows)


# Each attack: (name, function(client, i) -> True when the app answered or refused clearly).
def history_bomb(url, client, i):
    history = [_message("user", "Q" * 360_000), _message("assistant", " " * 100_000 + "x")]
    chat, _, standalone, *_ = client.predict("And how many heads?", history, 2, 0.3, False, True, False,
                                             api_name="/rag_chat")
    return len(standalone) < 10_000


def qna_history(url, client, i):
    history = [_message(role, f"{role} {n} " + "lorem ipsum " * 80)
               for n in range(400) for role in ("user", "assistant")]
    chat, *_ = client.predict("What is the capital of France?", "", GENERATIVE, history, 16, 0, 0,
                              api_name="/qna_chat")
    return len(chat) <= 42


def layer_spec(url, client, i):
    return client.predict("encoder", "The cat sat on the mat.", "", 0, False, "0-20000000",
                          api_name="/attention_views")


def astral_decode(url, client, i):
    return client.predict(ASTRAL, "beam search", api_name="/decode")


def contrastive_k20(url, client, i):
    return client.predict(" ".join(["tide"] * 900)[:3990], "contrastive search", 1.0, 50, 1.0, 0.0, 1.0, 1.0, 0,
                          200, 0, 4, 1.0, 1, 0.6, 20, False, api_name="/decode")


def astral_quantized(url, client, i):
    return list(client.predict("chat", "int8-dynamic", ASTRAL, 64, api_name="/quant_stream"))


def rag_numbers(url, client, i):
    return client.predict("What do attention heads do?", 10**9, -1.0, True, True, api_name="/rag_ask")


def docx_bomb(url, client, i):
    return _report_says_no(_upload(client, "bomb.docx", _docx_bomb(300_000)))


def no_spaces(url, client, i):
    return _report_says_no(_upload(client, "nospaces.txt", b"x" * 2_000_000))


def big_upload(url, client, i):
    import httpx

    response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.txt", b"a" * 25_000_000)},
                          headers={"X-Forwarded-For": ATTACKER}, timeout=CLIENT_TIMEOUT_S)
    return response.status_code == 413


def back_door(url, client, i):
    import httpx

    response = httpx.post(f"{url}gradio_api/run/qna_answer", json={"data": ["What is 2 + 2?", ""]},
                          headers={"X-Forwarded-For": ATTACKER}, timeout=CLIENT_TIMEOUT_S)
    return response.status_code == 404


def minted_session(url, client, i):
    fresh = _client(url, ATTACKER)  # a new session hash each time, from the attacker's address
    result = _upload(fresh, f"minted-{i}.txt", f"Minted session {i}: tide pools and harbour seals.\n".encode())
    rows = result[0].get("data", []) if isinstance(result[0], dict) else []
    return bool(rows) and rows[0][1] in ("added", "error")


ATTACKS = (history_bomb, qna_history, layer_spec, astral_decode, contrastive_k20, astral_quantized, rag_numbers,
           docx_bomb, no_spaces, big_upload, back_door, minted_session)


def _attack(url: str, fn, stop: threading.Event, record: dict, at_least_once: bool = False) -> None:
    """Repeat one attack until `stop`; each reply is clear (an answer or a message) or not."""
    client, i = _client(url, ATTACKER), 0
    while at_least_once or not stop.is_set():
        at_least_once = False
        start = time.perf_counter()
        try:
            clear = bool(fn(url, client, i))
        except Exception as exc:  # gradio's AppError carries the user's message; anything else is not clear
            text = str(exc)
            clear = type(exc).__name__ == "AppError" and bool(text) and "Something went wrong" not in text
            if not clear:
                record["unclear_example"] = f"{type(exc).__name__}: {text[:160]}"
        elapsed = time.perf_counter() - start
        record["sent"] += 1
        record["clear"] += clear
        record["slowest_s"] = max(record["slowest_s"], round(elapsed, 1))
        i += 1


def _normal(url: str, index: int, outcomes: list, lock: threading.Lock) -> None:
    ask = _ask_qna if index % 2 == 0 else _ask_docs
    start = time.perf_counter()
    try:
        ask(_client(url, f"10.0.{index // 250}.{index % 250 + 1}"), index)
        kind = "completed"
    except Exception as exc:  # classified, never raised: the bench reports them
        kind = f"failed: {type(exc).__name__}: {str(exc)[:160]}"
    with lock:
        outcomes.append((kind, time.perf_counter() - start))


def normal_round(url: str, first_index: int) -> dict:
    outcomes: list = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_normal, args=(url, first_index + i, outcomes, lock), daemon=True)
               for i in range(NORMAL_SESSIONS)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + ROUND_DEADLINE_S
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.perf_counter()))
    latencies = sorted(t for kind, t in outcomes if kind == "completed")
    failures = [kind for kind, _ in outcomes if kind != "completed"]
    return {"completed": len(latencies), "failed": len(failures), "hung": NORMAL_SESSIONS - len(outcomes),
            "p50_s": round(statistics.median(latencies), 1) if latencies else float("nan"),
            "p95_s": round(statistics.quantiles(latencies, n=20)[-1], 1) if len(latencies) > 1 else float("nan"),
            "first_failure": failures[0] if failures else ""}


def _serving(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> dict:
    for folder in (FILES, LOAD_FILES):
        folder.mkdir(parents=True, exist_ok=True)
    env = {"GENAI_LAB_DATA_DIR": str(OUT / "abuse-data"), "GENAI_LAB_TRUSTED_PROXIES": "1",
           "GENAI_LAB_ADDRESS_SESSIONS_PER_HOUR": "20"}
    with running_app(env) as (url, proc):
        warm = _client(url, "10.0.9.1")
        _ask_qna(warm, -2)
        _ask_docs(warm, -1)
        for fn in ATTACKS:  # every endpoint's models loaded once
            once = threading.Event()
            once.set()
            _attack(url, fn, once, {"sent": 0, "clear": 0, "slowest_s": 0.0}, at_least_once=True)
        rss_before = _process(proc.pid)[0]
        alone = normal_round(url, 0)
        stop = threading.Event()
        records = {fn.__name__: {"sent": 0, "clear": 0, "slowest_s": 0.0} for fn in ATTACKS}
        attackers = [threading.Thread(target=_attack, args=(url, fn, stop, records[fn.__name__]), daemon=True)
                     for fn in ATTACKS]
        for thread in attackers:
            thread.start()
        time.sleep(5)  # every attack is in flight before the students start
        attacked = normal_round(url, NORMAL_SESSIONS)
        stop.set()
        for thread in attackers:
            thread.join(timeout=CLIENT_TIMEOUT_S)
        rss_after = _process(proc.pid)[0]
        app = {"rss_before_mib": round(rss_before), "rss_after_mib": round(rss_after),
               "restarted": proc.poll() is not None, "still_serving": _serving(url),
               "attacks_still_running": sum(thread.is_alive() for thread in attackers)}
    return {"normal_alone": alone, "normal_under_attack": attacked, "attacks": records, "app": app}


if __name__ == "__main__":
    from bench.run_all import flatten

    for key, value in flatten(main()):
        print(f"{key:50s} {value}")

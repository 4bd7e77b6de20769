"""The app as its own process on 127.0.0.1, for bench scripts that talk to it over HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(env: dict[str, str], timeout_s: float = 180) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `python app.py` with these extra environment variables; yield (url, process)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env, "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.perf_counter() + timeout_s
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"app.py did not start (exit code {proc.poll()})") from None
                time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()

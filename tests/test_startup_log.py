"""A newcomer's `python app.py` log: the URL and what the app does, no library warnings.

The app runs as its own process with the background warm-up on (it loads both models, which
is when torch and torchao used to print a dozen warnings and progress bars appeared).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
NOISE = re.compile(r"warn|Failed to load|Traceback|Loading weights|it/s\]|HTTP Request", re.IGNORECASE)


def test_start_up_log_is_the_url_and_the_models(tmp_path, settings):
    port = free_port()
    log_path = tmp_path / "app.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_PORT": str(port), "GENAI_LAB_WARMUP": "1",
           "GENAI_LAB_CACHE_DIR": str(settings.cache_dir), "GENAI_LAB_DATA_DIR": str(tmp_path / "data")}
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        # The encoder loads after the chat model: its line means both loads have run.
        while "Loading SentenceTransformer" not in log_path.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.5)
        time.sleep(3)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    text = log_path.read_text()
    assert f"http://127.0.0.1:{port}" in text
    assert "Loading SentenceTransformer" in text, text
    assert not [line for line in text.splitlines() if NOISE.search(line)], text

"""Settings for genai-lab, read from the environment in one place.

Every other module receives a `Settings` object; none of them reads `os.environ`.
Each field documents the variable that sets it (see README, "Configuration").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(value: str | None) -> bool | None:
    """'1'/'true' -> True, '0'/'false' -> False, unset/other -> None (auto)."""
    if value is None:
        return None
    value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def _warmup_lessons(value: str | None) -> tuple[str, ...]:
    """GENAI_LAB_WARMUP beyond on/off: 'all' or lesson ids, comma separated ('1'/'0'/unset: none)."""
    if value is None or _flag(value) is not None:
        return ()
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _deployment(raw: str) -> str:
    """A deployment name fit for Chroma collection names: [a-z0-9-], at most 40 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", raw.strip().lower()).strip("-")[:40]
    if raw.strip() and not name:
        raise ValueError(f"GENAI_LAB_DEPLOYMENT={raw!r} has no letters or digits")
    return name


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "genai-lab"


def _default_model_jobs() -> int:
    """Model jobs at once by default: two (bench/load.py's best on 2 cores, one thread each), one when
    the CPU quota grants a single core. joblib reads the quota (cgroup cpu.max, affinity), not the host's
    core count, as models.hardware.usable_cores does."""
    from joblib import cpu_count

    return max(1, min(2, cpu_count(only_physical_cores=False)))


def _default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(base) / "genai-lab"


@dataclass(frozen=True)
class Settings:
    """Everything configurable about the app. Build with `Settings.from_env()`."""

    # Model overrides: a local folder or a hub id (GENAI_LAB_CHAT_MODEL, ..._ENCODER_MODEL, ..._QA_MODEL).
    chat_model: str | None = None
    encoder_model: str | None = None
    qa_model: str | None = None
    # Converted-model cache and per-user data (GENAI_LAB_CACHE_DIR, GENAI_LAB_DATA_DIR).
    cache_dir: Path = field(default_factory=lambda: _default_cache_dir(os.environ))
    data_dir: Path = field(default_factory=lambda: _default_data_dir(os.environ))
    # The Hugging Face hub cache searched for preloaded models; None = huggingface_hub's own
    # default, which follows HF_HUB_CACHE / HF_HOME (a Space's preload_from_hub lands there).
    hub_cache: Path | None = None
    # True: never touch the hub. False: hub allowed. None: detect (GENAI_LAB_OFFLINE or HF_HUB_OFFLINE).
    offline: bool | None = None
    # Server (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT) and queue (GENAI_LAB_QUEUE_SIZE: requests
    # waiting before new ones are turned away; GENAI_LAB_MODEL_CONCURRENCY: model jobs running at
    # once). Both defaults come from bench/load.py's settings sweep (figures in bench/RESULTS.md).
    host: str = "127.0.0.1"
    port: int = 7860
    queue_size: int = 32
    model_concurrency: int = 2
    # Sessions whose UI state gradio keeps in memory; the least recently used is dropped beyond
    # this (gradio's own default is 10000) (GENAI_LAB_SESSION_CAPACITY).
    session_capacity: int = 500
    # Memory for all sessions' UI state, in MB (GENAI_LAB_SESSION_STATE_MB): it caps the capacity above
    # at this budget divided by the most one session keeps (app.STATE_MB_PER_SESSION).
    session_state_mb: int = 4000
    # Load the default models in the background once the UI is up (GENAI_LAB_WARMUP=1, the default;
    # 0: nothing). GENAI_LAB_WARMUP=all also preloads everything every lesson needs (models, quantized
    # builds, the sample-corpus index); a comma-separated list of lesson ids (decoding,rag) only theirs.
    warmup: bool = True
    warmup_lessons: tuple[str, ...] = ()
    # Lessons (tabs/lessons.py): a folder of extra lesson files beside assets/lessons
    # (GENAI_LAB_LESSONS_DIR); the key that gives the presenter's lesson steps their own queue lane,
    # ahead of the class's (GENAI_LAB_INSTRUCTOR_KEY; unset: no lane); the address students open,
    # shown with a QR code in the presenter view (GENAI_LAB_CLASS_URL; default: a Space's own
    # address from SPACE_HOST, else the host the presenter's page was opened on).
    lessons_dir: Path | None = None
    instructor_key: str | None = None
    class_url: str | None = None
    # torch intra-op threads; 0 = the usable cores shared among the model jobs, at least one
    # (GENAI_LAB_TORCH_THREADS).
    torch_threads: int = 0
    # Context budget of the chat model in tokens, prompt + answer (GENAI_LAB_CONTEXT_TOKENS).
    context_tokens: int = 2048
    # Batched generation (models/generation): the chat model's free-running answers from every
    # session share forward passes. GENAI_LAB_BATCHING=0 gives each answer its own generate() again
    # (for comparisons); GENAI_LAB_BATCH_SIZE: answers decoded in one pass; GENAI_LAB_BATCH_TOKENS:
    # cache positions held at once (rows x the longest prompt + answer); GENAI_LAB_BATCH_WAIT_MS: how
    # long an idle batcher waits for answers asked at the same moment; GENAI_LAB_BATCH_THREADS: torch
    # threads of the batcher's worker, 0 = every usable core (a class's answers are most of the work,
    # and a batch's matrix products use every core well). Defaults from bench/batching.py.
    batching: bool = True
    batch_size: int = 16
    batch_tokens: int = 16384
    batch_wait_ms: float = 5.0
    batch_threads: int = 0
    # Document chat: a Chroma server instead of the embedded store (CHROMA_HOST, CHROMA_PORT),
    # and per-session limits (GENAI_LAB_MAX_FILES, GENAI_LAB_MAX_UPLOAD_MB, GENAI_LAB_MAX_CHUNKS).
    # A session's documents are deleted once it has ended: silent (no open page, no request) for
    # GENAI_LAB_SESSION_GRACE_S after its page's heartbeat dropped, so a Wi-Fi blip loses nothing,
    # or for GENAI_LAB_SESSION_TTL_S if it never held a heartbeat here (scripts, other replicas).
    chroma_host: str | None = None
    chroma_port: int = 8000
    # A Chroma server's TLS (CHROMA_SSL=1), token (CHROMA_TOKEN, sent in CHROMA_AUTH_HEADER:
    # "Authorization" as a Bearer token, or "X-Chroma-Token"), and the time limit of each call
    # (CHROMA_TIMEOUT_S). GENAI_LAB_DEPLOYMENT names this deployment's collections, so deployments
    # sharing one server never sweep each other's sessions (replicas of one deployment share it).
    chroma_ssl: bool = False
    chroma_token: str | None = field(default=None, repr=False)
    chroma_auth_header: str = "Authorization"
    chroma_timeout_s: float = 30.0
    deployment: str = ""
    max_files_per_session: int = 20
    max_upload_mb: float = 20.0
    max_chunks_per_session: int = 5000
    session_ttl_s: int = 3600
    session_grace_s: float = 600.0
    # What all sessions together may hold, so minting sessions cannot fill the server
    # (GENAI_LAB_TOTAL_CHUNKS, GENAI_LAB_TOTAL_UPLOAD_MB), and how many new document sessions one
    # client address may start per hour, 0 = no quota (GENAI_LAB_ADDRESS_SESSIONS_PER_HOUR; a class
    # behind one school router shares an address). GENAI_LAB_TRUSTED_PROXIES: how many reverse
    # proxies in front of the app append to X-Forwarded-For (0: the address is the TCP peer's).
    # The largest request body other than an upload, in kB (GENAI_LAB_MAX_REQUEST_KB): event inputs
    # (a prompt, a passage, a chat history) are capped at the door. Files in gradio's cache (uploads,
    # generated images) are deleted once older than GENAI_LAB_CACHE_CLEAN_S, checked as often.
    max_request_kb: int = 1000
    cache_clean_s: int = 1800
    # The longest a model job may run (GENAI_LAB_JOB_TIME_LIMIT_S): a streamed answer is stopped there
    # (its generation ends at the next token), and an upload's indexing gives up between batches.
    job_time_limit_s: float = 120.0
    # Time budget for reading one uploaded file (GENAI_LAB_PARSE_TIME_LIMIT_S): a file built to be
    # slow to parse is stopped (its parser runs in a child process) and reported.
    parse_time_limit_s: float = 20.0
    total_chunks: int = 60_000
    total_upload_mb: float = 400.0
    address_sessions_per_hour: int = 120
    trusted_proxies: int = 0
    # How often expired sessions are swept and freed memory is returned (GENAI_LAB_HOUSEKEEPING_S).
    housekeeping_s: float = 60.0
    # glibc malloc arenas for the whole process; 0 = glibc's default of 8 per core (GENAI_LAB_HEAP_ARENAS).
    heap_arenas: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        offline = _flag(env.get("GENAI_LAB_OFFLINE"))
        if offline is None and _flag(env.get("HF_HUB_OFFLINE")):
            offline = True

        def num(name: str, default, kind=int):
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                return kind(raw)
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from exc

        def path(name: str, default: Path) -> Path:
            raw = env.get(name)
            return Path(raw).expanduser() if raw else default

        return cls(
            chat_model=env.get("GENAI_LAB_CHAT_MODEL") or None,
            encoder_model=env.get("GENAI_LAB_ENCODER_MODEL") or None,
            qa_model=env.get("GENAI_LAB_QA_MODEL") or None,
            cache_dir=path("GENAI_LAB_CACHE_DIR", _default_cache_dir(env)),
            data_dir=path("GENAI_LAB_DATA_DIR", _default_data_dir(env)),
            offline=offline,
            host=env.get("GRADIO_SERVER_NAME") or "127.0.0.1",
            port=num("GRADIO_SERVER_PORT", 7860),
            queue_size=num("GENAI_LAB_QUEUE_SIZE", 32),
            model_concurrency=num("GENAI_LAB_MODEL_CONCURRENCY", _default_model_jobs()),
            session_capacity=num("GENAI_LAB_SESSION_CAPACITY", 500),
            session_state_mb=num("GENAI_LAB_SESSION_STATE_MB", 4000),
            warmup=_flag(env.get("GENAI_LAB_WARMUP")) is not False,
            warmup_lessons=_warmup_lessons(env.get("GENAI_LAB_WARMUP")),
            lessons_dir=path("GENAI_LAB_LESSONS_DIR", None),
            instructor_key=env.get("GENAI_LAB_INSTRUCTOR_KEY") or None,
            class_url=env.get("GENAI_LAB_CLASS_URL") or (f"https://{env['SPACE_HOST']}/" if env.get("SPACE_HOST")
                                                         else None),
            torch_threads=num("GENAI_LAB_TORCH_THREADS", 0),
            context_tokens=num("GENAI_LAB_CONTEXT_TOKENS", 2048),
            batching=_flag(env.get("GENAI_LAB_BATCHING")) is not False,
            batch_size=num("GENAI_LAB_BATCH_SIZE", 16),
            batch_tokens=num("GENAI_LAB_BATCH_TOKENS", 16384),
            batch_wait_ms=num("GENAI_LAB_BATCH_WAIT_MS", 5.0, float),
            batch_threads=num("GENAI_LAB_BATCH_THREADS", 0),
            chroma_host=env.get("CHROMA_HOST") or None,
            chroma_port=num("CHROMA_PORT", 8000),
            chroma_ssl=bool(_flag(env.get("CHROMA_SSL"))),
            chroma_token=env.get("CHROMA_TOKEN") or None,
            chroma_auth_header=env.get("CHROMA_AUTH_HEADER") or "Authorization",
            chroma_timeout_s=num("CHROMA_TIMEOUT_S", 30.0, float),
            deployment=_deployment(env.get("GENAI_LAB_DEPLOYMENT") or ""),
            max_files_per_session=num("GENAI_LAB_MAX_FILES", 20),
            max_upload_mb=num("GENAI_LAB_MAX_UPLOAD_MB", 20.0, float),
            max_chunks_per_session=num("GENAI_LAB_MAX_CHUNKS", 5000),
            session_ttl_s=num("GENAI_LAB_SESSION_TTL_S", 3600),
            session_grace_s=num("GENAI_LAB_SESSION_GRACE_S", 600.0, float),
            max_request_kb=num("GENAI_LAB_MAX_REQUEST_KB", 1000),
            cache_clean_s=num("GENAI_LAB_CACHE_CLEAN_S", 1800),
            job_time_limit_s=num("GENAI_LAB_JOB_TIME_LIMIT_S", 120.0, float),
            parse_time_limit_s=num("GENAI_LAB_PARSE_TIME_LIMIT_S", 20.0, float),
            total_chunks=num("GENAI_LAB_TOTAL_CHUNKS", 60_000),
            total_upload_mb=num("GENAI_LAB_TOTAL_UPLOAD_MB", 400.0, float),
            address_sessions_per_hour=num("GENAI_LAB_ADDRESS_SESSIONS_PER_HOUR", 120),
            trusted_proxies=num("GENAI_LAB_TRUSTED_PROXIES", 0),
            housekeeping_s=num("GENAI_LAB_HOUSEKEEPING_S", 60.0, float),
            heap_arenas=num("GENAI_LAB_HEAP_ARENAS", 2),
        )

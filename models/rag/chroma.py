"""The Chroma client the document store talks to, and the names of the collections it owns.

Embedded (a PersistentClient under `settings.data_dir/chroma`) or a Chroma server
(`settings.chroma_host`). For a server:
- token auth (`chroma_token`, sent in `chroma_auth_header`: "Authorization" as a Bearer token, or
  "X-Chroma-Token") and TLS (`chroma_ssl`) go through chromadb's own settings;
- every call has a time limit (`chroma_timeout_s`): chromadb's HTTP client waits forever
  (its httpx session has no timeout, and no setting reaches it), so each call runs on a small
  worker pool and a call that does not answer in time raises StoreUnavailable instead of
  holding a request (and its model slot) until the server comes back;
- collection names carry the deployment (`settings.deployment`), so deployments sharing one
  server never sweep each other's sessions: `session-<deployment>-<hash>`; without a deployment
  name, the plain `session-<hash>` of earlier versions, and only those are this app's.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import re
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

from models.similarity import embed

log = logging.getLogger(__name__)
SESSION_PREFIX = "session-"
SAMPLE_PREFIX = "sample-"
_LEGACY_SESSION = re.compile(r"session-[0-9a-f]{40}")
_LEGACY_SAMPLE = re.compile(r"sample-[0-9a-f]{40}")
TOKEN_PROVIDER = "chromadb.auth.token_authn.TokenAuthClientProvider"


class StoreUnavailable(ValueError):
    """The Chroma server did not answer in time (or at all); the message says so plainly."""


class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """chromadb embedding function over the app's SentenceTransformer (unit-length vectors)."""

    def __init__(self, encoder: Any = None, batch_size: int = 64):
        self.encoder = encoder
        self.batch_size = batch_size

    def __call__(self, input: Documents) -> Embeddings:
        if self.encoder is None:
            raise RuntimeError("MiniLMEmbedding was built without an encoder")
        return list(embed(self.encoder, list(input), self.batch_size))

    @staticmethod
    def name() -> str:
        return "genai-lab-sentence-transformer"

    def get_config(self) -> dict:
        return {"batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict) -> MiniLMEmbedding:
        return MiniLMEmbedding(None, config.get("batch_size", 64))

    def default_space(self) -> str:
        return "cosine"


# ---- names -------------------------------------------------------------------------------------
def _prefix(kind: str, deployment: str) -> str:
    return f"{kind}{deployment}-" if deployment else kind


def session_collection_name(session_id: str, deployment: str = "") -> str:
    """Stable, valid (3-512 chars of [a-zA-Z0-9._-]) and not reversible to the session id."""
    if not session_id:
        raise ValueError("No session id: reload the page.")
    return _prefix(SESSION_PREFIX, deployment) + hashlib.sha256(session_id.encode()).hexdigest()[:40]


def sample_collection_name(fingerprint: str, deployment: str = "") -> str:
    return _prefix(SAMPLE_PREFIX, deployment) + fingerprint[:40]


def owns_session(name: str, deployment: str = "") -> bool:
    """True for the session collections of this deployment (never another deployment's)."""
    if deployment:
        return name.startswith(_prefix(SESSION_PREFIX, deployment)) and len(name) == len(
            _prefix(SESSION_PREFIX, deployment)) + 40
    return bool(_LEGACY_SESSION.fullmatch(name))


def owns_sample(name: str, deployment: str = "") -> bool:
    if deployment:
        return name.startswith(_prefix(SAMPLE_PREFIX, deployment))
    return bool(_LEGACY_SAMPLE.fullmatch(name))


# ---- the client --------------------------------------------------------------------------------
def make_client(settings):
    """An embedded client, or a server client with auth, TLS and a time limit on every call."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    options: dict[str, Any] = {"anonymized_telemetry": False}
    if not settings.chroma_host:
        path = settings.data_dir / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=ChromaSettings(**options))
    if settings.chroma_token:
        options.update(chroma_client_auth_provider=TOKEN_PROVIDER, chroma_client_auth_credentials=settings.chroma_token,
                       chroma_auth_token_transport_header=settings.chroma_auth_header)
    if not settings.deployment:
        log.warning("GENAI_LAB_DEPLOYMENT is not set: another deployment sharing this Chroma server without "
                    "one would sweep this one's sessions (and this one its).")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="chroma")
    timed = Timed(chromadb, pool, settings.chroma_timeout_s)
    return timed.HttpClient(host=settings.chroma_host, port=settings.chroma_port, ssl=settings.chroma_ssl,
                            settings=ChromaSettings(**options))


def _wrapped(value) -> bool:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    return isinstance(value, (ClientAPI, Collection))


class Timed:
    """Calls a Chroma client's (or a collection's) methods on a worker pool, giving up after
    `timeout_s` with StoreUnavailable; clients and collections it returns are wrapped the same way.
    A call that timed out keeps its worker until the server answers or drops the connection."""

    def __init__(self, target, pool: concurrent.futures.ThreadPoolExecutor, timeout_s: float):
        self._target, self._pool, self._timeout_s = target, pool, timeout_s

    def __getattr__(self, name: str):
        value = getattr(self._target, name)
        if not callable(value) or isinstance(value, type):
            return value

        def call(*args, **kwargs):
            future = self._pool.submit(value, *args, **kwargs)
            try:
                result = future.result(timeout=self._timeout_s)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise StoreUnavailable(f"The document store did not answer within {self._timeout_s:g} s; "
                                       "try again in a moment.") from None
            if isinstance(result, list) and result and all(_wrapped(item) for item in result):
                return [Timed(item, self._pool, self._timeout_s) for item in result]
            return Timed(result, self._pool, self._timeout_s) if _wrapped(result) else result

        return call

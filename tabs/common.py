"""What every tab shares: the services it is built with, the model queue, turning failures into
messages, escaping.

A handler never lets an exception reach the page as a traceback: `user_errors` logs it and
raises `gr.Error` with a sentence the user can act on.
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from models.generation.requests import TokenBudgetExceeded
from models.registry import ModelUnavailable

if TYPE_CHECKING:
    from config import Settings
    from models.generation.service import GenerationService
    from models.housekeeping import Housekeeper
    from models.rag.store import DocumentStore
    from models.registry import ModelRegistry
    from models.sessions import SessionActivity
    from tabs.door import Door

log = logging.getLogger(__name__)

# Listeners that run a model share one concurrency group: at most settings.model_concurrency model
# jobs run at once, each with its share of the cores (models/hardware.intra_op_threads).
MODEL_GROUP = "model"
# Listeners whose model work is free-running generation through the batched service: the service's
# one worker is their model job, so they wait in their own group, a batch's worth at a time.
GENERATION_GROUP = "generation"


@dataclass(frozen=True)
class Services:
    """The long-lived objects one app owns, created once by app.build_demo and handed to every
    tab's build(services, settings): nothing in a tab outlives the request it serves."""

    settings: Settings
    registry: ModelRegistry  # the models, loaded lazily and shared by every tab
    store: DocumentStore  # the document chat's per-session collections
    housekeeper: Housekeeper  # sweeps expired sessions and returns freed memory, off the request path
    activity: SessionActivity  # open pages and requests per session, fed by the door
    door: Door  # the HTTP middleware in front of gradio's routes
    generation: GenerationService  # decodes every session's free-running answers in shared batches


def model_queue(settings) -> dict:
    """Keyword arguments for a listener that runs a model."""
    return {"concurrency_id": MODEL_GROUP, "concurrency_limit": settings.model_concurrency}


def client_address(request, trusted_proxies: int = 0) -> str:
    """The client's address: the TCP peer, or with `trusted_proxies` reverse proxies in front that
    each append to X-Forwarded-For, the entry the outermost trusted one wrote (the rest is spoofable)."""
    peer = getattr(getattr(request, "client", None), "host", "") or ""
    if trusted_proxies > 0:
        headers = getattr(request, "headers", None) or {}
        hops = [hop.strip() for hop in (headers.get("x-forwarded-for") or "").split(",") if hop.strip()]
        if len(hops) >= trusted_proxies:
            return hops[-trusted_proxies]
    return peer


def generation_queue(settings) -> dict:
    """Keyword arguments for a listener that streams answers through the generation service; with
    batching off, the model queue (one generate() per request)."""
    if not settings.batching:
        return model_queue(settings)
    return {"concurrency_id": GENERATION_GROUP, "concurrency_limit": settings.batch_size}


def time_limit_note(settings) -> str:
    """What a user reads when a model job reached its time limit (models/time_limit.within)."""
    return (f"Stopped after {settings.job_time_limit_s:g} s: on this shared server every answer has a time limit. "
            "What was produced so far is shown.")


def describe_error(exc: BaseException) -> str:
    """A one-line message for an unexpected failure (the traceback goes to the log)."""
    if isinstance(exc, (ModelUnavailable, TokenBudgetExceeded)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "The server ran out of memory for this request; try a shorter input."
    return f"Something went wrong ({type(exc).__name__}: {exc}). The app is still running; try again."


def _to_message(fn, exc: Exception) -> gr.Error:
    """The gr.Error for a failed handler. models/ raise ValueError with a sentence for the user
    (an empty prompt, a range that does not exist): shown as it is. Anything else is unexpected:
    logged with its traceback, shown as one line."""
    if isinstance(exc, ValueError):
        return gr.Error(str(exc))
    log.exception("Handler %s failed", fn.__name__)
    return gr.Error(describe_error(exc))


@contextlib.contextmanager
def _failures_as_messages(fn):
    try:
        yield
    except gr.Error:
        raise
    except Exception as exc:
        raise _to_message(fn, exc) from None


def user_errors(fn):
    """Decorate a handler (plain or generator) so failures become a clear gr.Error."""

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            with _failures_as_messages(fn):
                yield from fn(*args, **kwargs)

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _failures_as_messages(fn):
            return fn(*args, **kwargs)

    return wrapper


def escape(text: str) -> str:
    """Escape text for HTML (quotes included, so it is safe inside attributes too)."""
    return html.escape(str(text), quote=True)

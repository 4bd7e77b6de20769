"""The app's front door: an ASGI middleware in front of gradio's routes, for what a public Space
must refuse or notice before any handler runs.

- Session activity: every request naming a `session_hash` (the queue's data stream, a heartbeat)
  counts as activity, and open heartbeat connections are counted (models/sessions.py), so a
  session's documents outlive a Wi-Fi blip and an idle-but-open page.
- A heartbeat is a session's lifeline: gradio ends a session (and cancels its running jobs) when
  its heartbeat connection drops. Only the first open connection per session reaches gradio; a
  second one (a reconnect while the old one still looks open, or anyone else holding the session
  hash) gets a plain keep-alive stream from here, so leaving it can never end the session.
- Request bodies are capped before gradio reads them (HTTP 413): an upload at the session's size
  limit, everything else (event inputs included, which gradio stores in the session before it
  validates them) at `max_request_kb`.
- Routes this app never uses answer 404: deep links (they read a session's UI values by its hash),
  the proxy, media streams, recordings, component servers, vibe editing, run history,
  monitoring, login, dev reload, MCP.

Installed through `demo.launch(app_kwargs={"middleware": [door.middleware()]})` (app.launch_kwargs),
which gradio passes to its FastAPI app.
"""

from __future__ import annotations

import asyncio
import re
import threading
from urllib.parse import parse_qs

from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.responses import PlainTextResponse

from models.sessions import SessionActivity

HEARTBEAT = re.compile(r"/gradio_api/heartbeat/([^/]+)/?$")
UPLOAD = re.compile(r"/gradio_api/upload/?$")
CLOSED = re.compile(r"^/(?:gradio_api/(?:proxy=|stream/|(?:deep_link|process_recording|component_server|vibe-edit|"
                    r"undo-vibe-edit|vibe-code|run-history|runs|dev/reload|mcp)(?:/|$))|(?:monitoring|login|logout)(?:/|$))")
KEEPALIVE_EVERY_S = 15.0  # gradio's default heartbeat interval
_POLL_S = 0.5


class Door:
    """What the middleware needs from the app: session activity and a way to stop its streams."""

    def __init__(self, activity: SessionActivity, max_upload_bytes: int = 21_000_000,
                 max_request_bytes: int = 1_000_000):
        self.activity = activity
        self.max_upload_bytes, self.max_request_bytes = max_upload_bytes, max_request_bytes
        self.closing = threading.Event()

    def middleware(self) -> Middleware:
        return Middleware(DoorMiddleware, door=self)

    def close(self) -> None:
        """End the keep-alive streams this door serves (the server is shutting down)."""
        self.closing.set()


def _session_in_query(scope) -> str:
    raw = scope.get("query_string") or b""
    if b"session_hash=" not in raw:
        return ""
    values = parse_qs(raw.decode("latin-1")).get("session_hash") or [""]
    return values[0][:128]


class DoorMiddleware:
    """Pure ASGI middleware (streams pass through untouched)."""

    def __init__(self, app, door: Door):
        self.app, self.door = app, door

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if CLOSED.match(path):
            return await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
        heartbeat = HEARTBEAT.search(path)
        if heartbeat:
            return await self._heartbeat(heartbeat.group(1)[:128], scope, receive, send)
        session = _session_in_query(scope)
        if session:
            self.door.activity.seen(session)
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            limit = self.door.max_upload_bytes if UPLOAD.search(path) else self.door.max_request_bytes
            return await RequestBodyLimitMiddleware(self.app, max_body_size=limit)(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _heartbeat(self, session: str, scope, receive, send) -> None:
        activity = self.door.activity
        already_open = activity.opened(session)
        try:
            if already_open:
                await self._keep_alive(receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            activity.closed(session)

    async def _keep_alive(self, receive, send) -> None:
        """An event stream like gradio's heartbeat, whose end means nothing to the session."""
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                (b"cache-control", b"no-cache")]})
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            since_ping = KEEPALIVE_EVERY_S
            while not gone.done() and not self.door.closing.is_set():
                if since_ping >= KEEPALIVE_EVERY_S:
                    await send({"type": "http.response.body", "body": b"data: ALIVE\n\n", "more_body": True})
                    since_ping = 0.0
                await asyncio.wait({gone}, timeout=_POLL_S)
                since_ping += _POLL_S
            if not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-write
            pass
        finally:
            gone.cancel()


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass

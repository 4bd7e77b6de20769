"""Deep links, the class link and the instructor key: plain functions of strings.

A deep link opens the app at a lesson step: `?lesson=decoding&step=3` (add `&presenter=1` for
the presenter view). The class link is the address students open (shown with a QR code); the
instructor key unlocks the presenter's own queue lane.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DeepLink:
    lesson: str | None  # a known lesson id, or None
    step: int  # 1-based; 0 = the lesson's introduction (no step run yet)
    presenter: bool
    problem: str | None = None  # a link that names an unknown lesson says so


def read_link(params: Mapping[str, str], lessons: Mapping[str, int]) -> DeepLink:
    """The start of a page from its query parameters; `lessons` maps lesson id -> number of steps."""
    presenter = str(params.get("presenter", "")).strip().lower() in _TRUE
    lesson = str(params.get("lesson", "")).strip()[:80] or None
    if lesson is None:
        return DeepLink(None, 0, presenter)
    if lesson not in lessons:
        return DeepLink(None, 0, presenter, f"The link names lesson {lesson!r}, which this app does not have.")
    raw = str(params.get("step", "")).strip()
    if not raw:  # the lesson's introduction: what a class link opens
        return DeepLink(lesson, 0, presenter)
    try:
        step = int(raw[:6])
    except ValueError:
        step = 1
    return DeepLink(lesson, max(1, min(step, lessons[lesson])), presenter)


def step_query(lesson: str | None, step: int, presenter: bool = False) -> str:
    """The query string of a deep link ('' for no lesson)."""
    params = {"lesson": lesson, "step": step} if lesson else {}
    if presenter:
        params["presenter"] = 1
    return "?" + urlencode(params) if params else ""


@dataclass(frozen=True)
class ClassLink:
    url: str
    reachable: bool  # False: a loopback address, which students' phones cannot open
    note: str = ""


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def class_link(configured: str | None, host_header: str | None, scheme: str = "http",
               lesson: str | None = None) -> ClassLink:
    """The address students open: the configured one (GENAI_LAB_CLASS_URL, or a Space's own host),
    else the host this page was opened on. With a lesson, students land on its introduction."""
    base = (configured or "").strip()
    if not base:
        host = (host_header or "").strip() or "127.0.0.1"
        base = f"{scheme if scheme in ('http', 'https') else 'http'}://{host}/"
    if not base.endswith("/"):
        base += "/"
    url = base + (f"?{urlencode({'lesson': lesson})}" if lesson else "")
    host = urlsplit(base).hostname or ""
    if _is_loopback(host):
        return ClassLink(url, False, "This is this computer's own address: students' phones cannot open it. "
                                     "Serve on the network (GRADIO_SERVER_NAME=0.0.0.0) and set "
                                     "GENAI_LAB_CLASS_URL to the address they can reach.")
    return ClassLink(url, True)


def key_matches(configured: str | None, candidate: str | None) -> bool:
    """True when an instructor key is configured and `candidate` is it (constant-time compare)."""
    if not configured or not candidate:
        return False
    return hmac.compare_digest(configured.encode(), str(candidate)[:256].encode())

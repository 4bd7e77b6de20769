"""Shared fixtures: offline settings, one model registry per test run, a live app, a browser.

Tests use the real embedded models through the offline path (HF_HUB_OFFLINE=1): the
registry converts the packaged weights into the cache once, every later test reuses them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from bench.server import free_port  # noqa: E402,F401  (tests import it from here)
from config import Settings  # noqa: E402
from models.registry import ModelRegistry  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"
EXIT_STATUS = pytest.StashKey[int]()
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(data_dir) -> Settings:
    """The environment's settings (cache dir included), forced offline, with a private data dir."""
    base = Settings.from_env()
    return Settings(**{**base.__dict__, "offline": True, "data_dir": data_dir, "warmup": False})


@pytest.fixture(scope="session")
def registry(settings) -> ModelRegistry:
    return ModelRegistry(settings)


@pytest.fixture(scope="session")
def lm(registry):
    """SmolLM2-135M-Instruct as loaded by the registry (CausalLM: model + tokenizer)."""
    return registry.chat_model()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's many tiny forward passes: on a shared 2-core machine it
    is several times faster than two contending ones. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def launched_demo(settings, registry):
    """The whole app built with these settings and launched on loopback; yields (URL, demo)."""
    from app import build_demo, launch_kwargs

    demo = build_demo(settings, registry)
    port = free_port()
    options = {**launch_kwargs(settings, demo.services), "server_name": "127.0.0.1", "server_port": port}
    demo.launch(prevent_thread_lock=True, quiet=True, **options)
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.services.door.close()
        demo.close()
        demo.services.housekeeper.stop()


@contextlib.contextmanager
def launched_app(settings, registry):
    """The whole app built with these settings and launched on loopback; yields its URL."""
    with launched_demo(settings, registry) as (url, _):
        yield url


@pytest.fixture(scope="session")
def app_url(settings, registry):
    """The whole app launched on loopback once per test run; yields its URL."""
    with launched_app(settings, registry) as url:
        yield url


def patient_client(url: str):
    """A gradio_client Client whose HTTP calls wait up to 2 minutes (a shared, busy test machine)."""
    from gradio_client import Client

    return Client(url, verbose=False, httpx_kwargs={"timeout": 120})


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by playwright. Required in CI; skipped elsewhere if missing."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"chromium not found at {CHROMIUM}; `make test` installs it with apt-get")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield browser
        browser.close()


def offline_page(browser, url: str, viewport: tuple[int, int] = (1400, 1000)):
    """(context, page): a page in a context of its own (its own session) on `url`, with every
    non-local request blocked and listed in page.blocked_requests."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    blocked: list[str] = []

    def guard(route):
        if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")):
            return route.continue_()
        blocked.append(route.request.url)
        return route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.blocked_requests = blocked
    page.goto(url)
    page.wait_for_selector(".gradio-container", timeout=60_000)
    return context, page


@pytest.fixture
def page(browser, app_url):
    """A fresh browser page on the app, with every non-local request blocked."""
    context, page = offline_page(browser, app_url)
    yield page
    context.close()


def screenshot(page, name: str, start: str | None = None) -> Path:
    """Save a full-page screenshot under tests/artifacts/ (kept out of git) and return its path;
    with `start` (a selector), only from a little above that element to the end of the page."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    clip = None
    if start:
        top, width, height = page.evaluate(
            "sel => [document.querySelector(sel).getBoundingClientRect().top + window.scrollY,"
            " document.documentElement.scrollWidth, document.documentElement.scrollHeight]", start)
        top = max(0, top - 80)
        clip = {"x": 0, "y": top, "width": width, "height": height - top}
    page.screenshot(path=str(path), full_page=True, clip=clip)
    return path


def run_at_once(fn, items, timeout: float = 300) -> list:
    """fn(item) for every item, each on its own thread, all started together; their results in
    order. A call still running after `timeout` seconds raises TimeoutError (a hang, not a slow
    machine) instead of blocking the suite."""
    pool = ThreadPoolExecutor(max_workers=len(items))
    try:
        return list(pool.map(fn, items, timeout=timeout))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def forward_counter(model):
    """A list that grows by one on every forward pass of the model, and the hook's handle."""
    calls: list[float] = []
    return calls, model.register_forward_hook(lambda *_: calls.append(time.monotonic()))


def wait_quiet(calls: list, quiet_s: float, deadline_s: float) -> bool:
    """True once no forward pass has started for `quiet_s` seconds (within `deadline_s`)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not calls or time.monotonic() - calls[-1] > quiet_s:
            return True
        time.sleep(0.2)
    return False


def cancel_mid_run(model, submit, wait_s: float = 120) -> tuple[int, int]:
    """Start a job with `submit()` once `model` is idle, cancel it a few forward passes in, and
    return (passes after the cancel, passes in all) once the model has been quiet for 3 s."""
    calls, hook = forward_counter(model)
    try:
        assert wait_quiet(calls, 2, 120)
        job = submit()
        deadline = time.monotonic() + wait_s
        while len(calls) < 4 and not job.done() and time.monotonic() < deadline:  # a few tokens are out
            time.sleep(0.05)
        job.cancel()
        at_stop = len(calls)
        assert wait_quiet(calls, 3, 120)
        return len(calls) - at_stop, len(calls)
    finally:
        hook.remove()


README_SHOTS = Path(__file__).parent.parent / "assets" / "screenshots"


def readme_screenshot(page, name: str, start: str | None = None) -> Path:
    """`screenshot`, also copied to the README's assets/screenshots/<name>.png when that file is
    missing: delete it to refresh it, so test runs leave git clean."""
    path = screenshot(page, name, start)
    if not (README_SHOTS / f"{name}.png").exists():
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, README_SHOTS / f"{name}.png")
    return path


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without the interpreter's final teardown once pytest has reported.

    After a full run (every test passed and the summary printed), a native thread pool of
    one of the libraries (torch, onnxruntime, chromadb, playwright's driver) could abort
    that teardown with "terminate called without an active exception", turning a green
    run into exit code 134. Nothing is left to clean up at this point.
    """
    if EXIT_STATUS in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[EXIT_STATUS])

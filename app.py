"""genai-lab: see how transformers and LLMs work, one tab per idea.

`build_demo(settings, registry)` creates the long-lived services (model registry, document
store, housekeeping thread), hands them to every tab and registers what ends a browser
session; the module-level `demo` is what a Hugging Face Space (or `gradio app.py`) serves.
Models load lazily, so the page is up in seconds and a background warm-up loads the default
models after launch.
"""

from __future__ import annotations

import logging
from pathlib import Path

from config import Settings
from models.housekeeping import limit_heap_arenas

SETTINGS = Settings.from_env()
# Before gradio, torch and chromadb start their threads: fewer malloc arenas, so memory freed
# after a burst of sessions goes back to the OS (measured in bench/load.py).
limit_heap_arenas(SETTINGS.heap_arenas)

import gradio as gr  # noqa: E402

from models.rag.store import DocumentStore  # noqa: E402
from models.registry import ModelRegistry  # noqa: E402
from models.sessions import SessionActivity  # noqa: E402

# A newcomer's log shows the URL and what the app does, not the libraries' chatter: torchao
# (imported by transformers) warns that its CUDA kernels are missing, expected on a CPU; torch
# warns about torchao's enum registration; httpx logs gradio's own start-up probes.
for noisy in ("torchao", "torch.utils._pytree", "httpx"):
    logging.getLogger(noisy).setLevel(logging.ERROR)

from models.generation.service import GenerationService  # noqa: E402
from models.housekeeping import Housekeeper  # noqa: E402
from tabs import attention, decoding, finetune, lessons, qna, quantized, rag, rag_documents, tokens  # noqa: E402
from tabs.common import Services  # noqa: E402
from tabs.door import Door  # noqa: E402

ASSETS = Path(__file__).parent / "assets"
# (tab title, module with build(services, settings)), in the order a lesson goes.
TABS = [
    ("From text to numbers", tokens),
    ("QnA bot", qna),
    ("Decoding playground", decoding),
    ("Attention visualizer", attention),
    ("Fine-tuning", finetune),
    ("Chat with your documents", rag),
    ("Quantized vs full", quantized),
]

INTRO = (
    "# genai-lab\n"
    "See how transformers and LLMs work: turn text into tokens and vectors, ask a question, turn "
    "the decoding knobs, look at attention, fine-tune a model, chat with documents, and compare "
    "a model with its quantized twin. "
    "Everything runs on this machine's CPU with small embedded models."
)


def create_services(settings: Settings, registry: ModelRegistry | None = None) -> Services:
    """The objects that live as long as the app: models, session activity, document store,
    housekeeper (not started), the HTTP door and the generation service (its worker starts with the
    first answer)."""
    registry = registry or ModelRegistry(settings)
    activity = SessionActivity()
    store = DocumentStore(settings, registry.sentence_encoder, activity=activity)
    door = Door(activity, max_upload_bytes=door_file_bytes(settings) + 1_000_000,  # + the multipart framing
                max_request_bytes=settings.max_request_kb * 1000)
    return Services(settings, registry, store, Housekeeper(store, settings.housekeeping_s), activity, door,
                    GenerationService.from_settings(settings))


def door_file_bytes(settings: Settings) -> int:
    """The largest file the door lets in: a session's size limit plus 1 MB, so a file just over the
    limit still gets its own message in the ingestion report; anything larger is HTTP 413."""
    return int(settings.max_upload_mb * 1e6) + 1_000_000


def build_demo(settings: Settings | None = None, registry: ModelRegistry | None = None) -> gr.Blocks:
    settings = settings or Settings.from_env()
    services = create_services(settings, registry)
    # Uploads and the files handlers return (heatmap PNGs) leave gradio's cache once this old.
    with gr.Blocks(title="genai-lab", delete_cache=(settings.cache_clean_s, settings.cache_clean_s)) as demo:
        gr.Markdown(INTRO)
        bar = lessons.build_bar(settings)  # the lesson bar sits above the tabs it drives
        handles = []
        with gr.Tabs() as main_tabs:
            for title, module in TABS:
                tab_id = module.__name__.rsplit(".", 1)[-1]
                with gr.Tab(title, id=tab_id):
                    handle = module.build(services, settings)
                if handle is not None:  # what a lesson may fill and press in this tab
                    if handle.id != tab_id:
                        raise ValueError(f"The {title!r} tab's handle is named {handle.id!r}, not {tab_id!r}.")
                    handle.title = title
                    handles.append(handle)
        # Lesson files checked against these tabs (mistakes logged and shown), Next/Prev, deep links.
        demo.lessons = lessons.wire(bar, handles, main_tabs, services, settings, demo)

    def end_session(request: gr.Request) -> None:
        rag_documents.end_session(services.store, request)

    # A dropped heartbeat (closed tab or Wi-Fi blip) starts the session's grace period; the housekeeper
    # deletes what a session left once it has been silent that long.
    demo.unload(end_session)
    # Sweeps sessions the browser never closed (API clients) and frees their memory, off the request path.
    services.housekeeper.start()
    # api_open=False: a direct POST to /gradio_api/run/<api> cannot skip the queue (it is open by default
    # off Spaces); every model job waits its turn.
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.model_concurrency, api_open=False)
    demo.services = services  # lets tests and bench reach the services...
    demo.registry = services.registry  # ...and the loaded models
    return demo


# The most UI state one session keeps: the attention tab's heatmap weights (uint8; SmolLM2 at 256
# tokens: 17.7 MB, dropped 15 min after the run), the fine-tuning tab's trained weights (top 2 layers
# 14.2 MB + a rank-16 SmolLM2 adapter 7.4 MB), the decoding steps, and the input values gradio
# stores per component (each request body capped at the door).
STATE_MB_PER_SESSION = 48


def state_capacity(settings: Settings) -> int:
    """Sessions whose UI state gradio keeps: GENAI_LAB_SESSION_CAPACITY, but no more than the state
    memory budget (GENAI_LAB_SESSION_STATE_MB) holds at STATE_MB_PER_SESSION each."""
    return max(1, min(settings.session_capacity, int(settings.session_state_mb // STATE_MB_PER_SESSION)))


def launch_kwargs(settings: Settings, services: Services) -> dict:
    return {
        # gradio hands these to its FastAPI app: the door sees every request before gradio does.
        "app_kwargs": {"middleware": [services.door.middleware()]},
        "server_name": settings.host,
        "server_port": settings.port,
        "css_paths": [ASSETS / "app.css", ASSETS / "lessons.css"],
        # System fonts: the default theme fetches web fonts, which a classroom offline cannot.
        "theme": gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                font_mono=["ui-monospace", "Consolas", "monospace"]),
        "footer_links": ["api", "settings"],
        "state_session_capacity": state_capacity(settings),
        # At the door: an upload far over the per-session size limit is refused with HTTP 413 before it is stored.
        "max_file_size": door_file_bytes(settings),
    }


def configure_torch(settings: Settings) -> None:
    import torch

    from models.hardware import intra_op_threads

    torch.set_num_threads(intra_op_threads(settings))


demo = build_demo(SETTINGS)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_torch(SETTINGS)
    demo.launch(prevent_thread_lock=True, **launch_kwargs(SETTINGS, demo.services))
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # per-load "Loading weights" bars, not a download
    if SETTINGS.warmup:  # after the page is up, so the first visitor never waits for it
        demo.registry.warm_up()
        demo.lessons.warm_up(SETTINGS.warmup_lessons)  # GENAI_LAB_WARMUP=all or lesson ids: what they need
    demo.block_thread()

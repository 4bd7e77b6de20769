"""The embedded models inside a bench's own process, set up the way app.py sets them up.

Benches that compare the app's code with the plain library call load the models here, offline
(the packaged weights only) and without the app's warm-up, with the intra-op thread count the
app would use.
"""

from __future__ import annotations


def offline_settings():
    from config import Settings

    base = Settings.from_env()
    return Settings(**{**base.__dict__, "offline": True, "warmup": False})


def offline_registry():
    """(settings, registry), with torch's threads set as app.py's configure_torch sets them."""
    import torch

    from models.hardware import intra_op_threads
    from models.registry import ModelRegistry

    settings = offline_settings()
    torch.set_num_threads(intra_op_threads(settings))
    return settings, ModelRegistry(settings)

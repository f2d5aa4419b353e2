"""The model kept warm across backends, and what ``status`` reads of it.

A pause closes the backend, not the model: the loaded pipelines stay here, at module level,
for the settings that loading depends on (``load_key``: model, refiner, VAE, device, dtype,
offload, scheduler, x2 pass). A change of steps, guidance, size or strengths is read with each
batch and reloads nothing. A change of the key drops the old pipelines *before* the new ones
load, so that the GPU never holds both.

The state file (``logs/diffusers.<worker>.json``) says what was loaded, when, and the memory
it holds. The backend writes it when it has the model and removes it when it closes; one left
behind by a daemon that died is shown as "last loaded", the lock telling the two apart.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from sora_watcher.atomic import write_atomically
from sora_watcher.backends.sdxl_errors import is_out_of_memory, too_large_to_load
from sora_watcher.backends.sdxl_settings import DiffusersSettings
from sora_watcher.config import Settings
from sora_watcher.folders import LOCK_FILE, lock_is_held

if TYPE_CHECKING:  # the extra: imported on the worker thread, once known to be there
    from sora_watcher.backends.sdxl_pipeline import Loaded

STATE_FILE = "diffusers.{worker}.json"  # in logs/

LoadKey = tuple[object, ...]

_kept: Loaded | None = None
gpu = threading.Lock()  # one generation (or load) at a time on one device


def load_key(config: DiffusersSettings, home: Path) -> LoadKey:
    """What the loaded pipelines depend on; nothing else calls for a new load."""
    c = config
    return (home, c.model, c.refiner, c.vae, c.device, c.dtype, c.offload, c.scheduler, c.upscale)


def kept(config: DiffusersSettings, home: Path) -> Loaded | None:
    """The warm model, if it was loaded for these settings."""
    if _kept is not None and load_key(_kept.config, _kept.home) == load_key(config, home):
        return _kept
    return None


def warm(config: DiffusersSettings, home: Path) -> tuple[Loaded, bool]:
    """The loaded pipelines for ``config`` (call with ``gpu`` held), and whether they were
    loaded just now. Out of memory while loading stops the queue: see ``too_large_to_load``."""
    global _kept
    from sora_watcher.backends import sdxl_pipeline

    loaded = kept(config, home)
    if loaded is not None:
        return loaded, False
    release()  # the old one's memory goes before the new one comes
    try:
        _kept = sdxl_pipeline.load(config, home)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        release()  # what the failed load had placed
        raise too_large_to_load(config.model, str(exc).splitlines()[0][:300]) from None
    return _kept, True


def release() -> None:
    """Drop the warm model and give its memory back to the device now."""
    global _kept
    _kept = None
    gc.collect()  # the pipelines' modules hold cycles: the memory goes only once collected
    empty_cache()


def forget() -> None:
    """Drop the warm model (tests, benchmarks of a cold load)."""
    with gpu:
        release()


def empty_cache() -> None:
    import sys

    torch = sys.modules.get("torch")  # never imported here only to empty nothing
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- what `status` says ------------------------------------------------------------------------


def state_file(settings: Settings) -> Path:
    return settings.logs / STATE_FILE.format(worker=settings.worker_id)


def remember(path: Path, loaded: Loaded) -> None:
    """What ``status`` says of the model, written when a backend has it."""
    from sora_watcher.backends.sdxl_pipeline import memory_mb

    state = {
        "model": loaded.config.model,
        "refiner": loaded.config.refiner,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "load_s": loaded.seconds,
        "loaded_at": loaded.loaded_at,
        "weights_mb": loaded.weights_mb(),
        "device_memory_mb": memory_mb(loaded.device),
    }
    try:  # a note in logs/ (made with the log), as the board is: no fsync
        write_atomically(path, json.dumps(state, indent=1).encode(), durable=False)
    except OSError as exc:  # only `status` reads it
        logger.debug("diffusers: cannot write {}: {}", path, exc)


def forget_state(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        logger.debug("diffusers: cannot remove {}: {}", path, exc)


def state_line(settings: Settings, device: str) -> str:
    """The model's line in ``status``: loaded, last loaded (by a daemon no longer running), or
    not loaded."""
    try:
        state = json.loads(state_file(settings).read_text("utf-8"))
        memory = state.get("device_memory_mb")
        held = f", {memory} MB on the device" if memory is not None else ""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.get("loaded_at", 0)))
        what = (
            f"on {state['device']} ({state['dtype']}) at {when} in {state['load_s']}s: "
            f"{state['model']}, weights {state['weights_mb']} MB"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return f"  device {device}; the model is not loaded"
    if lock_is_held(settings.processing / settings.worker_id / LOCK_FILE):
        return f"  loaded {what}{held}"
    return f"  last loaded {what} (the daemon is not running)"

"""Stable Diffusion XL on this machine's own GPU, through ``diffusers``: ``SORA_BACKEND=diffusers``.

Free per image, private, never rate-limited, no account. It needs the ``local`` extra
(``pip install 'sora-watcher[local]'``: torch, diffusers, transformers, accelerate, compel);
without it, ``create`` says the install command and the daemon waits for it.

The model is loaded once and kept warm, like the web backend's browser: at start-up (on a thread
of its own, so that the daemon is READY at once) or at the first prompt, and kept across jobs and
across a pause of the queue (``sdxl_state``: a module-level cache, for the settings loading
depends on; ``status`` reads what it wrote of the model). One generation runs at a time:
``submit`` queues the prompt for the one worker thread and returns; ``finished`` and
``collect`` are as for the Images API (``follows_tasks=False``: a generation in flight at a
crash is made again at the next start). ``variants`` are the images of one batch.

Every image records its seed (given by the job, else drawn here): image ``i`` of a batch has
``seed + i``, and the same prompt, seed, model and settings give the same pixels on the same
machine. A drawn seed leaves room for the batch (at most ``MAX_SEED - 3``), and a job's seed
plus its variants must stay within ``MAX_SEED`` (checked with the input). A stop is heard
between two denoising steps, through the pipeline's step callback.
"""

from __future__ import annotations

import io
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from sora_watcher.backends import sdxl_state
from sora_watcher.backends.base import (
    MAX_SEED,
    MAX_STEPS,
    SIZE,
    Capabilities,
    Generation,
    ImageFile,
    JobOptions,
)
from sora_watcher.backends.calls import Calls
from sora_watcher.backends.sdxl_errors import (
    OutOfMemory,
    black_image,
    classify,
    extra_missing,
    is_out_of_memory,
    missing_packages,
    model_missing,
)
from sora_watcher.backends.sdxl_settings import (
    MAX_SIDE,
    DiffusersSettings,
    check_size,
    local_folder,
    read_settings,
)
from sora_watcher.config import Settings
from sora_watcher.errors import GenerationError, Interrupted, Unreachable

if TYPE_CHECKING:  # the extra: imported on the worker thread, once known to be there
    import numpy as np

    from sora_watcher.backends.sdxl_pipeline import Batch, Loaded

# The aspect ratios as the sizes SDXL was trained at (about a megapixel each).
SIZES = {"1:1": "1024x1024", "3:2": "1216x832", "2:3": "832x1216",
         "16:9": "1344x768", "9:16": "768x1344"}  # fmt: skip
MAX_VARIANTS = 4
# The x2 pass's largest result: SDXL's sizes doubled (1344x768 -> 2688x1536) and no more. The
# UNet's attention grows with the square of the pixels: a larger source would not fit any GPU.
MAX_UPSCALED_PIXELS = 2048 * 2048


CAPABILITIES = Capabilities(
    aspect_ratios=tuple(SIZES),
    variants=tuple(range(1, MAX_VARIANTS + 1)),
    check_size=check_size,
    seeds=True,
    negative_prompts=True,
    max_steps=MAX_STEPS,
    follows_tasks=False,
    # Minutes per image on a slow GPU (or a CPU). A load (a download) runs on the worker
    # thread while the loop goes on: see sdxl_pipeline.from_pretrained.
    busy_seconds=900.0,
)


def capabilities(settings: Settings, environ: Mapping[str, str]) -> Capabilities:
    return CAPABILITIES


def size_of(options: JobOptions, default: str | None) -> tuple[int, int]:
    """The job's size; else, for 1:1, SORA_DIFFUSERS_SIZE; else SDXL's for the aspect ratio.

    A job that names no aspect ratio gets "1:1" (``JobOptions``' default): the two look the
    same, so SORA_DIFFUSERS_SIZE stands for both, and a job asking for 16:9 gets 16:9."""
    chosen = default if options.aspect_ratio == "1:1" else None
    match = SIZE.fullmatch(options.size or chosen or SIZES[options.aspect_ratio])
    assert match is not None
    return int(match["width"]), int(match["height"])


def upscaled(width: int, height: int) -> bool:
    """Whether the x2 pass may run on an image of this size (see ``MAX_UPSCALED_PIXELS``)."""
    return 4 * width * height <= MAX_UPSCALED_PIXELS and 2 * max(width, height) <= MAX_SIDE


def display_name(name: str | None, home: Path) -> str | None:
    """A model as the PNG's parameters line names it: a folder by its name, an id as it is."""
    if name is None or local_folder(name, home) is None:
        return name
    return Path(name).name


forget = sdxl_state.forget  # drop the warm model (tests, benchmarks of a cold load)


# -- the backend ----------------------------------------------------------------------------


@dataclass
class Call:
    prompt: str
    options: JobOptions
    seed: int


class DiffusersBackend:
    def __init__(
        self, config: DiffusersSettings, settings: Settings, stop: threading.Event
    ) -> None:
        self.config = config
        self.home = settings.home
        self.state_file = sdxl_state.state_file(settings)
        self.stop = stop
        self.closed = threading.Event()
        self.state_lock = threading.Lock()  # the state file: the worker writes, close removes
        self.calls: Calls[Call] = Calls("sdxl", stop)
        self.waiting: queue.Queue[str | None] = queue.Queue()
        self.remembered = False  # the state file written for this backend (see _warm)
        self.worker = threading.Thread(target=self._work, name="diffusers", daemon=True)
        self.worker.start()

    def submit(self, prompt: str, options: JobOptions) -> str:
        # A drawn seed leaves room for a batch's seed + i.
        drawn = random.randint(0, MAX_SEED - (MAX_VARIANTS - 1))
        seed = options.seed if options.seed is not None else drawn
        task_id = self.calls.add(Call(prompt, options, seed))
        self.waiting.put(task_id)
        return task_id

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        return self.calls.finished(task_ids, wait)

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        return self.calls.collect(task_id)

    def find_task(self, prompt: str, since: float) -> str | None:
        return None  # nothing outlives the process: the prompt is made again

    def close(self) -> None:
        """Ends the generation under way at its next step; the model stays warm (a new
        backend, after a pause, says so again), ``status`` no longer says it is in use."""
        with self.state_lock:
            self.closed.set()
            sdxl_state.forget_state(self.state_file)
        self.waiting.put(None)

    def load(self) -> Loaded:
        with sdxl_state.gpu:
            return self._warm()

    def _warm(self) -> Loaded:  # with the gpu lock held
        loaded, fresh = sdxl_state.warm(self.config, self.home)
        with self.state_lock:  # never written again once closed
            if not self.closed.is_set() and (fresh or not self.remembered):
                sdxl_state.remember(self.state_file, loaded)
                self.remembered = True
        return loaded

    def _work(self) -> None:
        """The one worker thread: the model loaded (at start, if so set), then each call."""
        if self.config.load_at_start or sdxl_state.kept(self.config, self.home) is not None:
            self._load_at_start()  # warm already (after a pause): `status` says so
        while not self.closed.is_set():
            task_id = self.waiting.get()
            if task_id is None or self.closed.is_set():
                break
            call = self.calls.call(task_id)
            if call is not None:
                self._finish(task_id, call)

    def _load_at_start(self) -> None:
        """A load before any prompt: an error is said, and said again by the first prompt."""
        try:
            self.load()
        except GenerationError as exc:
            logger.error("diffusers: {} ({})", exc.name, exc.detail)
        except Exception as exc:
            logger.opt(exception=exc).error("diffusers: the model could not be loaded")

    def _finish(self, task_id: str, call: Call) -> None:
        generation: Generation | None = None
        error: GenerationError | None = None
        interrupted = False
        try:
            generation = self._generate(task_id, call)
        except GenerationError as exc:
            error = exc
        except Interrupted:
            interrupted = True
            error = Unreachable(f"{task_id}: stopped during the generation")
            logger.info("{}: generation stopped", task_id)
        except Exception as exc:
            error = self._classified(exc)
            if isinstance(error, Unreachable):
                logger.opt(exception=exc).error("{}: unexpected error in the generation", task_id)
        finally:
            self.calls.end(task_id, generation, error, interrupted)

    def _classified(self, exc: Exception) -> GenerationError:
        if not is_out_of_memory(exc):
            return classify(exc)
        sdxl_state.empty_cache()
        return OutOfMemory(str(exc).splitlines()[0][:300])

    def _generate(self, task_id: str, call: Call) -> Generation:
        from sora_watcher.backends import sdxl_pipeline

        batch = self.batch(task_id, call)
        with sdxl_state.gpu:
            loaded = self._warm()
            started = time.monotonic()
            arrays = sdxl_pipeline.run(loaded, batch, self._on_step)
        seconds = round(time.monotonic() - started, 3)
        given = call.options.seed is not None
        images = [
            self._image(task_id, array, batch.seed + i, given) for i, array in enumerate(arrays)
        ]
        details = self.details(loaded, batch)
        return Generation(task_id, images, timings={"generate_s": seconds}, details=details)

    def batch(self, task_id: str, call: Call) -> Batch:
        from sora_watcher.backends.sdxl_pipeline import Batch

        config, options = self.config, call.options
        width, height = size_of(options, config.size)
        strength = config.upscale_strength if config.upscale == "x2" else None
        if strength is not None and not upscaled(width, height):
            logger.warning(
                "{}: no x2 pass for {}x{}: the result would pass {} pixels",
                task_id, width, height, MAX_UPSCALED_PIXELS,
            )  # fmt: skip
            strength = None
        return Batch(
            call.prompt, options.negative_prompt, width, height, options.variants, call.seed,
            options.steps or config.steps, config.guidance, config.refiner_switch, strength,
        )  # fmt: skip

    def _on_step(self, name: str) -> None:
        """Called after each denoising step of each pass: a stop (or close) ends the
        generation there."""
        if self.stop.is_set() or self.closed.is_set():
            raise Interrupted()

    def _image(self, task_id: str, array: np.ndarray, seed: int, given: bool) -> ImageFile:
        from PIL import Image

        from sora_watcher.backends.sdxl_pipeline import is_black

        if is_black(array):
            raise black_image(seed, given)
        pixels = (array.clip(0, 1) * 255).round().astype("uint8")
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        height, width = pixels.shape[:2]
        return ImageFile(
            out.getvalue(), width, height, f"diffusers:{task_id}", "PNG", {"seed": seed}
        )

    def details(self, loaded: Loaded, batch: Batch) -> dict[str, object]:
        """The sidecar's (and the PNG's parameters line's) settings: the model by its name
        (its folder in ``model_path``), A1111's names for the sampler and the x2 pass."""
        config, upscale = self.config, batch.upscale_strength is not None
        details: dict[str, object] = {
            "model": display_name(config.model, self.home),
            "model_path": config.model,
            "steps": batch.steps,
            "sampler": loaded.sampler,
            "scheduler": config.scheduler,
            "guidance": batch.guidance,
            "refiner": display_name(config.refiner, self.home),
            "refiner_path": config.refiner,
            "refiner_switch": batch.refiner_switch if config.refiner else None,
            "upscale": 2 if upscale else None,
            "upscale_steps": batch.steps if upscale else None,
            "upscale_strength": batch.upscale_strength,
            "device": loaded.device,
            "dtype": loaded.dtype,
        }
        # A batch's seeds: each image's own is in its ImageFile's details.
        if batch.count == 1:
            details["seed"] = batch.seed
        else:
            details["seeds"] = [batch.seed + i for i in range(batch.count)]
        return details


def create(
    settings: Settings, environ: Callable[[], Mapping[str, str]], stop: threading.Event
) -> DiffusersBackend:
    missing = missing_packages()
    if missing:
        raise extra_missing(missing)
    config = read_settings(environ())
    folder = local_folder(config.model, settings.home)
    if folder is not None and not folder.is_dir():  # said now, not after a load at start
        raise model_missing("SORA_DIFFUSERS_MODEL", config.model, folder, "no such folder")
    return DiffusersBackend(config, settings, stop)


def status(settings: Settings, environ: Mapping[str, str], offline: bool) -> tuple[list[str], bool]:
    config = read_settings(environ)
    refiner = f", refiner {config.refiner}" if config.refiner else ""
    lines = [f"backend: diffusers, model {config.model}{refiner}, {config.sampler}"]
    missing = missing_packages()
    if missing:
        lines.append(f"  not installed: {', '.join(missing)}: {extra_missing(missing).detail}")
        return lines, False
    return [*lines, sdxl_state.state_line(settings, config.device)], True


def login(settings: Settings) -> int:
    print(
        "sora-watcher login is not needed with the diffusers backend: it runs the model on "
        "this machine, with no account."
    )
    return 0

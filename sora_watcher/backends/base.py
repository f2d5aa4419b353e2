"""The one seam between the daemon and whatever makes the images.

A generation is two calls, so that the daemon can write the task id down in between: a
backend whose tasks live on the service (the Sora web app) lets a restart follow the task it
already paid for instead of submitting the prompt again. A backend whose generation is one
blocking call (the Images API) runs it in the background between ``submit`` and ``collect``;
its tasks do not outlive the process, and its ``Capabilities`` say so.

Every backend module (see ``sora_watcher.backends``) offers two functions:
``capabilities(settings, environ)``, pure, used to check inputs before anything is paid, and
``create(settings, environ, stop)``, which returns a started ``ImageBackend``.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image, UnidentifiedImageError

from sora_watcher.errors import DownloadFailed

SIZE = re.compile(r"(?P<width>[1-9][0-9]{1,4})x(?P<height>[1-9][0-9]{1,4})")


@dataclass(frozen=True)
class JobOptions:
    """What an input asks of its images; ``None`` leaves the choice to the backend."""

    aspect_ratio: str = "1:1"
    variants: int = 1
    size: str | None = None  # "WxH" or "auto"; wins over aspect_ratio
    quality: str | None = None
    background: str | None = None
    model: str | None = None
    seed: int | None = None  # the same seed, prompt, model and settings: the same pixels
    negative_prompt: str | None = None
    steps: int | None = None  # denoising steps


MAX_SEED = 2**32 - 1  # what A1111 and the other SD tools write: a seed stays portable
MAX_STEPS = 150  # the most denoising steps a job may ask, whatever the backend


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, so that an input asking for more fails before it is sent."""

    aspect_ratios: tuple[str, ...]
    variants: tuple[int, ...]
    qualities: tuple[str, ...] = ()  # empty: the option is not supported
    backgrounds: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()  # sizes always accepted ("auto", "1024x1024" ...)
    # Whether another "WxH" is accepted, for a model (None: the default one): None if it is,
    # else what is wrong with it. None here: only ``sizes``.
    check_size: Callable[[str, str | None], str | None] | None = None
    models: bool = False  # a job may name its model
    seeds: bool = False  # a job may give its seed
    negative_prompts: bool = False  # a job may give what to keep out of the image
    max_steps: int = 0  # a job may give its steps, up to this (0: it may not)
    default_in_flight: int = 1
    max_in_flight: int = 1
    # A task id still means something after a failed collect and after a restart: the task
    # is followed again, not sent again.
    follows_tasks: bool = True
    # How long one call may keep the worker busy beyond a generation's own timeout (a page
    # to load, a download): the watchdog's allowance between two signs of life.
    busy_seconds: float = 90.0

    def problem(self, options: JobOptions) -> str | None:
        """What is wrong with ``options`` for this backend, naming the option and what is
        allowed; ``None`` if nothing."""
        if options.aspect_ratio not in self.aspect_ratios:
            return _not_one_of("aspect_ratio", options.aspect_ratio, self.aspect_ratios)
        if options.variants not in self.variants:
            return _not_one_of("variants", options.variants, self.variants)
        for name, value, allowed in (
            ("quality", options.quality, self.qualities),
            ("background", options.background, self.backgrounds),
        ):
            if value is not None and value not in allowed:
                return _not_one_of(name, value, allowed)
        unsupported = self.unsupported(options)
        if unsupported is not None:
            return unsupported
        if options.steps is not None and not 1 <= options.steps <= self.max_steps:
            return f"steps {options.steps!r} is not between 1 and {self.max_steps}"
        if options.seed is not None and options.seed + options.variants - 1 > MAX_SEED:
            # image i of a batch gets seed + i: the last one's must stay a portable seed
            most = MAX_SEED - options.variants + 1
            return (
                f"seed {options.seed} with {options.variants} variants: the last image's seed "
                f"would pass {MAX_SEED}; give a seed of at most {most}"
            )
        if options.size is not None:
            return self.size_problem(options.size, options.model)
        return None

    def unsupported(self, options: JobOptions) -> str | None:
        """The first option given that this backend has no use for, said."""
        taken = "does not take it"
        for name, value, supported, said in (
            ("model", options.model, self.models, "has no choice of model"),
            ("seed", options.seed, self.seeds, taken),
            ("negative_prompt", options.negative_prompt, self.negative_prompts, taken),
            ("steps", options.steps, self.max_steps > 0, taken),
        ):
            if value is not None and not supported:
                return f"{name}: this backend {said} (SORA_BACKEND)"
        return None

    def size_problem(self, size: str, model: str | None) -> str | None:
        if size in self.sizes:
            return None
        if self.check_size is None:
            if not self.sizes:
                return "size: this backend takes aspect_ratio, not size"
            return _not_one_of("size", size, self.sizes)
        if not SIZE.fullmatch(size):
            return f"size {size!r} is not WxH (e.g. 1536x1024) nor one of {', '.join(self.sizes)}"
        problem = self.check_size(size, model)
        return None if problem is None else f"size {size!r}: {problem}"


ASPECT_RATIOS = ("1:1", "3:2", "2:3", "16:9", "9:16")
# For input checks without a backend at hand: every value that some backend takes.
ANY_BACKEND = Capabilities(
    aspect_ratios=ASPECT_RATIOS,
    variants=tuple(range(1, 11)),
    qualities=("auto", "low", "medium", "high", "xhigh", "max"),
    backgrounds=("auto", "opaque", "transparent"),
    sizes=("auto",),
    check_size=lambda size, model: None,
    models=True,
    seeds=True,
    negative_prompts=True,
    max_steps=MAX_STEPS,
)


def _not_one_of(name: str, value: object, allowed: tuple[object, ...]) -> str:
    if not allowed:
        return f"{name}: this backend does not support it"
    return f"{name} {value!r} is not one of {', '.join(map(str, allowed))}"


@dataclass(frozen=True)
class ImageFile:
    """One full-size image, as PNG bytes."""

    png: bytes
    width: int
    height: int
    source_url: str  # where it came from, without a query string (signed URLs are credentials)
    source_format: str  # what the service sent: PNG, WEBP, JPEG ...
    # What is this image's own in its sidecar, over its generation's details (its seed).
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Generation:
    """What one task gave: its images, how long each step took, and what the service said
    of it (model, size, usage, request id ...) for the sidecar."""

    task_id: str
    images: list[ImageFile]
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)


class ImageBackend(Protocol):
    """Raises ``sora_watcher.errors.GenerationError`` subclasses, or ``Interrupted``."""

    def submit(self, prompt: str, options: JobOptions) -> str:
        """Start a generation; return its task id."""
        ...

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        """Those of the tasks that need no more waiting (done, failed, or past their deadline);
        waits up to ``wait`` seconds for one. Lets one thread follow several tasks at once."""
        ...

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        """Wait for a task to finish and return its full-size images."""
        ...

    def find_task(self, prompt: str, since: float) -> str | None:
        """A task for ``prompt`` created after ``since`` (a Unix time), if the service has one.

        Used after a crash between a submission and the moment its task id was written down.
        """
        ...

    def close(self) -> None: ...


def to_png(data: bytes, url: str) -> tuple[bytes, int, int, str]:
    """PNG bytes, width, height and the format the service sent; ``DownloadFailed`` if
    ``data`` is not one whole image. A PNG is verified, not decoded, and kept as it is."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            source_format, (width, height) = probe.format or "unknown", probe.size
            probe.verify()  # catches truncated files, which open() alone lets through
        if source_format == "PNG":  # verified to its last chunk: no need to decode it
            return data, width, height, source_format
        image: Image.Image = Image.open(io.BytesIO(data))
        image.load()
    # Pillow says "not a whole image" in many ways: a bad header is a ValueError or a
    # struct.error, a huge declared size a DecompressionBombError.
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error,
            Image.DecompressionBombError) as exc:  # fmt: skip
        raise DownloadFailed(f"{url}: not a complete image ({len(data)} bytes): {exc}") from None
    out = io.BytesIO()
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA")
    image.save(out, format="PNG")
    return out.getvalue(), image.width, image.height, source_format

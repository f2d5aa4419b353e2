"""The one seam between the daemon and whatever makes the images.

A generation is two calls, so that the daemon can write the task id down in between: after a
crash it then follows the task it already paid for instead of submitting the prompt again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (480, 480),
    "3:2": (720, 480),
    "2:3": (480, 720),
    "16:9": (854, 480),
    "9:16": (480, 854),
}
VARIANT_COUNTS = (1, 2, 4)


@dataclass(frozen=True)
class JobOptions:
    aspect_ratio: str = "1:1"
    variants: int = 1


@dataclass(frozen=True)
class ImageFile:
    """One full-size image, already converted to PNG."""

    png: bytes
    width: int
    height: int
    source_url: str  # without its query string: signed URLs are credentials
    source_format: str  # what the server sent: PNG, WEBP, JPEG ...


@dataclass(frozen=True)
class Generation:
    """What one task gave: its images and how long each step took."""

    task_id: str
    images: list[ImageFile]
    timings: dict[str, float] = field(default_factory=dict)


class ImageBackend(Protocol):
    """Raises ``sora_driver.errors.SoraError`` subclasses, or ``Interrupted`` when stopping."""

    def submit(self, prompt: str, options: JobOptions) -> str:
        """Start a generation; return its task id."""
        ...

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        """Those of the tasks that need no more waiting (done, failed, or past their deadline);
        waits up to ``wait`` seconds for one. Lets one thread follow several tasks at once."""
        ...

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        """Wait for a task to finish and download its full-size images."""
        ...

    def find_task(self, prompt: str, since: float) -> str | None:
        """A task for ``prompt`` created after ``since`` (a Unix time), if the site has one.

        Used after a crash between a submission and the moment its task id was written down.
        """
        ...

    def close(self) -> None: ...

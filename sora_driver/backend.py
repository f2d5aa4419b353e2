"""The one seam between the daemon and whatever makes the images."""

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
    source_url: str
    source_format: str  # what the server sent: PNG, WEBP, JPEG ...


@dataclass(frozen=True)
class Generation:
    """What one prompt gave: its images and how long each step took."""

    task_id: str
    prompt: str
    images: list[ImageFile]
    started_at: float
    submitted_at: float
    finished_at: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at


class ImageBackend(Protocol):
    """Prompt in, full-size images out. Raises ``sora_driver.errors.SoraError`` subclasses."""

    def generate(self, prompt: str, options: JobOptions) -> Generation: ...

    def close(self) -> None: ...

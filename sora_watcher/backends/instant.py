"""A backend that makes a small image at once, for tests and benchmarks of the daemon itself.

Selected with ``SORA_BACKEND=instant``: the fake beside the real backends. It never touches a
browser or the network. A prompt holding ``[instant:hang]`` never comes back, like a browser
call that hangs: the tests of the systemd watchdog need a worker stuck on purpose. One holding
``[instant:refuse]`` is refused, as a service's moderation refuses a prompt: the tests of failed
jobs and of their retry need one.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import threading
from collections.abc import Callable, Mapping

from PIL import Image

from sora_watcher.backends.base import Capabilities, Generation, ImageFile, JobOptions
from sora_watcher.config import Settings
from sora_watcher.errors import ContentRejected

SIZE = (64, 64)
HANG = "[instant:hang]"
REFUSE = "[instant:refuse]"


# Permissive, so that the daemon's own checks and the tests of any input shape can run here.
CAPABILITIES = Capabilities(
    aspect_ratios=("1:1", "3:2", "2:3", "16:9", "9:16"),
    variants=(1, 2, 3, 4),
    qualities=("auto", "low", "medium", "high"),
    backgrounds=("auto", "opaque", "transparent"),
    sizes=("auto", "64x64"),
    models=True,
    default_in_flight=1,
    max_in_flight=16,
    busy_seconds=3.0,  # its calls return at once; a hung one ([instant:hang]) is stuck
)


def capabilities(settings: Settings, environ: Mapping[str, str]) -> Capabilities:
    return CAPABILITIES


def create(
    settings: Settings, environ: Callable[[], Mapping[str, str]], stop: threading.Event
) -> InstantBackend:
    return InstantBackend()


def status(settings: Settings, environ: Mapping[str, str], offline: bool) -> tuple[list[str], bool]:
    return ["backend: instant (made here, for tests)"], True


def login(settings: Settings) -> int:
    print("sora-watcher login is not needed with the instant backend")
    return 0


class InstantBackend:
    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._prompts: dict[str, str] = {}

    def submit(self, prompt: str, options: JobOptions) -> str:
        task_id = f"task_instant_{next(self._counter):08d}"
        self._prompts[task_id] = prompt
        return task_id

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        return [t for t in task_ids if HANG not in self._prompts.get(t, "")] or task_ids[:1]

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        prompt = self._prompts.pop(task_id, task_id)
        if HANG in prompt:
            threading.Event().wait()
        if REFUSE in prompt:
            raise ContentRejected("the instant backend refuses prompts marked [instant:refuse]")
        colour = tuple(hashlib.sha256(prompt.encode()).digest()[:3])
        images = []
        for _ in range(options.variants):
            out = io.BytesIO()
            Image.new("RGB", SIZE, colour).save(out, format="PNG", compress_level=1)
            images.append(ImageFile(out.getvalue(), *SIZE, f"instant:{task_id}", "PNG"))
        return Generation(task_id, images)

    def find_task(self, prompt: str, since: float) -> str | None:
        return None  # nothing survives a restart here, so there is never a task to adopt

    def close(self) -> None:
        pass

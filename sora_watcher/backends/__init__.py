"""The backends that make images, by their ``SORA_BACKEND`` name.

Each is a module with ``capabilities(settings, environ)``, ``create(settings, environ, stop)``,
``status(settings, environ, offline)`` and ``login(settings)``; it reads its own settings. The
module is imported only when chosen, so that the Images API client is not loaded for the web
backend, nor Playwright for the API. Backends depend on the core; the core knows them only
by the names below.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, cast

from sora_watcher.backends.base import Capabilities, ImageBackend

if TYPE_CHECKING:  # config imports this module for the names
    from sora_watcher.config import Settings

Environ = Callable[[], Mapping[str, str]]  # read afresh at each start: .env may have changed

BACKENDS: dict[str, str] = {
    "openai": "sora_watcher.backends.openai_images",  # the OpenAI Images API (the default)
    "web": "sora_driver.backend",  # the Sora web app in a real browser
    "instant": "sora_watcher.backends.instant",  # the fake, for tests and benchmarks
}


class BackendModule(Protocol):
    def capabilities(self, settings: Settings, environ: Mapping[str, str]) -> Capabilities: ...

    def create(
        self, settings: Settings, environ: Environ, stop: threading.Event
    ) -> ImageBackend: ...

    def status(
        self, settings: Settings, environ: Mapping[str, str], offline: bool
    ) -> tuple[list[str], bool]: ...

    def login(self, settings: Settings) -> int: ...


def load(name: str) -> BackendModule:
    return cast(BackendModule, importlib.import_module(BACKENDS[name]))

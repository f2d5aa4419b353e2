"""The backends that make images, by their ``SORA_BACKEND`` name.

Each is a module with ``capabilities(settings, environ)``, ``create(settings, environ, stop)``,
``status(settings, environ, offline)`` and ``login(settings)``; it reads its own section of
the settings, declared in a table (``sora_watcher.options``) in a light module of its own.
The backend module is imported only when chosen, so that the Images API client is not loaded
for the web backend, nor Playwright for the API; the settings modules import neither, so that
the command line and ``.env.example`` can list every section. Backends depend on the core; the
core knows them only by the names below.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from sora_watcher.backends.base import Capabilities, ImageBackend
from sora_watcher.options import Choice, Table

if TYPE_CHECKING:  # config imports this module for the names
    from sora_watcher.config import Settings

Environ = Callable[[], Mapping[str, str]]  # read afresh at each start: .env may have changed


class Backend(Choice):
    OPENAI = "openai"  # the OpenAI Images API (the default)
    WEB = "web"  # the Sora web app in a real browser
    INSTANT = "instant"  # the fake, for tests and benchmarks
    DIFFUSERS = "diffusers"  # Stable Diffusion XL on this machine's GPU (the local extra)
    CHATGPT = "chatgpt-web"  # the ChatGPT web app in a real browser (opt-in)


@dataclass(frozen=True)
class Entry:
    module: str  # the backend, imported only when chosen
    settings: str | None  # the module whose OPTIONS table is its section; None: no section


BACKENDS: dict[Backend, Entry] = {
    Backend.OPENAI: Entry(
        "sora_watcher.backends.openai_images", "sora_watcher.backends.openai_settings"
    ),
    Backend.WEB: Entry("sora_driver.backend", "sora_driver.settings"),
    Backend.INSTANT: Entry("sora_watcher.backends.instant", None),
    Backend.DIFFUSERS: Entry("sora_watcher.backends.sdxl", "sora_watcher.backends.sdxl_settings"),
    Backend.CHATGPT: Entry("sora_driver.chatgpt.backend", "sora_driver.chatgpt.settings"),
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
    return cast(BackendModule, importlib.import_module(BACKENDS[Backend(name)].module))


def section(name: str) -> Table:
    """A backend's own options (empty if it has none), without importing the backend."""
    module = BACKENDS[Backend(name)].settings
    return cast(Table, importlib.import_module(module).OPTIONS) if module else ()


def sections() -> dict[Backend, Table]:
    """Every backend's own options, for the command line and ``.env.example``."""
    return {name: section(name) for name in BACKENDS}

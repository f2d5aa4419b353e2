"""The chatgpt-web backend's section of the configuration: ``SORA_BACKEND=chatgpt-web``.

Its own options are declared here, once; the options every web backend shares (the session
file, the browser, the page timeout, captures, recycling) are the web section's very
``Option`` objects, read again here rather than declared twice, so ``.env.example`` and the
command line have each of them once. No browser library is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sora_driver.settings import SHARED, read_section
from sora_watcher.options import (
    Flags,
    Option,
    Table,
    check_fields,
    seconds,
    under_home_or_none,
    url,
    verbatim,
)

if TYPE_CHECKING:  # only for the type: the core never imports a backend
    from sora_watcher.config import Settings

OPTIONS: Table = (
    Option("url", "SORA_CHATGPT_URL", "https://chatgpt.com", url,
           "the chatgpt-web backend's site"),
    Option("prefix", "SORA_CHATGPT_PREFIX", "Generate an image:", verbatim,
           "the words put before each prompt, asking for an image"),
    Option("min_interval", "SORA_MIN_INTERVAL", "60", seconds(0),
           "seconds between two sends (0: none)"),
    Option("selectors", "SORA_CHATGPT_SELECTORS", "", under_home_or_none,
           "selector profile overriding the built-in chatgpt one"),
)  # fmt: skip


@dataclass(frozen=True)
class ChatGptSettings:
    url: str  # without the trailing slash
    prefix: str
    min_interval: float
    selectors: Path | None  # None: the built-in profile
    # shared with the web backend
    session_file: Path
    page_timeout: float
    headless: bool
    browser_path: str | None
    debug_dir: Path
    recycle_after: int


check_fields(OPTIONS + SHARED, ChatGptSettings)


def read_settings(
    flags: Flags, environ: Mapping[str, str], home: Path, debug: bool
) -> ChatGptSettings:
    """The section: flag > environment > default; ``home`` and ``debug`` are the core's."""
    return read_section(OPTIONS + SHARED, ChatGptSettings, flags, environ, home, debug)


def from_settings(settings: Settings, environ: Mapping[str, str]) -> ChatGptSettings:
    return read_settings(settings.flags, environ, settings.home, settings.debug)

"""The web backend's section of the configuration: ``SORA_BACKEND=web``.

Declared once, in ``OPTIONS``: the ``WebSettings`` fields, the command-line flags and the
lines of ``.env.example`` come from it. This module imports no browser library, so that the
command line can list the flags without loading Playwright.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sora_watcher.options import (
    Flags,
    Option,
    Table,
    check_fields,
    count,
    flag_word,
    resolve,
    seconds,
    text_or_none,
    under_home,
    under_home_or_none,
    url,
)

if TYPE_CHECKING:  # only for the type: the core never imports a backend
    from sora_watcher.config import Settings

SectionT = TypeVar("SectionT")

# The options every web backend shares (the chatgpt-web section reads these very objects).
SESSION_FILE = Option(
    "session_file",
    "SORA_SESSION_FILE",
    "session.json",
    under_home,
    "saved browser session",
    "--session-file",
)
PAGE_TIMEOUT = Option(
    "page_timeout",
    "SORA_PAGE_TIMEOUT",
    "30",
    seconds(1),
    "seconds a page load, a page element or a download may take",
)
HEADLESS = Option(
    "headless",
    "SORA_HEADLESS",
    "true",
    flag_word,
    "headless browser (false or --headed: a visible window)",
    "--headed",
    const="false",
)
BROWSER_PATH = Option(
    "browser_path", "SORA_BROWSER_PATH", "", text_or_none, "Chromium to use", "--browser-path"
)
DEBUG_DIR = Option(
    "debug_dir",
    "SORA_DEBUG_DIR",
    "debug_screenshots",
    under_home,
    "screenshots and page HTML saved on failures",
)
RECYCLE_AFTER = Option(
    "recycle_after",
    "SORA_RECYCLE_AFTER",
    "50",
    count(0),
    "a fresh browser every N jobs (0: never)",
)
SHARED: Table = (SESSION_FILE, PAGE_TIMEOUT, HEADLESS, BROWSER_PATH, DEBUG_DIR, RECYCLE_AFTER)
OPTIONS: Table = (
    SESSION_FILE,
    Option("base_url", "SORA_BASE_URL", "https://sora.com", url,
           "the web backend's site", "--base-url"),
    PAGE_TIMEOUT,
    HEADLESS,
    BROWSER_PATH,
    Option("selectors", "SORA_SELECTORS", "", under_home_or_none,
           "selector profile overriding the built-in one", "--selectors"),
    DEBUG_DIR,
    RECYCLE_AFTER,
)  # fmt: skip


@dataclass(frozen=True)
class WebSettings:
    session_file: Path
    base_url: str  # without the trailing slash
    page_timeout: float  # a page load, an element, a download
    headless: bool
    browser_path: str | None  # None: Playwright's Chromium, else one on PATH
    selectors: Path | None  # None: the built-in profile
    debug_dir: Path
    recycle_after: int  # jobs per browser, restarted after that many; 0: never


check_fields(OPTIONS, WebSettings)


def read_section(
    table: Table,
    cls: Callable[..., SectionT],
    flags: Flags,
    environ: Mapping[str, str],
    home: Path,
    debug: bool,
) -> SectionT:
    """A web backend's section (``table`` read into ``cls``): flag > environment > default;
    ``home`` and ``debug`` are the core's (--debug shows the browser, unless told otherwise)."""
    values: dict[str, Any] = resolve(table, flags, environ, home)
    if debug and not HEADLESS.given(flags, environ):
        values["headless"] = headless_with_debug(environ)
    return cls(**values)


def read_settings(flags: Flags, environ: Mapping[str, str], home: Path, debug: bool) -> WebSettings:
    """The web section: flag > environment > default; ``home`` and ``debug`` are the core's."""
    return read_section(OPTIONS, WebSettings, flags, environ, home, debug)


def from_settings(settings: Settings, environ: Mapping[str, str]) -> WebSettings:
    """The web section with the daemon's command line, home folder and --debug."""
    return read_settings(settings.flags, environ, settings.home, settings.debug)


def headless_with_debug(environ: Mapping[str, str]) -> bool:
    """Headless unless said otherwise; --debug shows the browser when there is a screen."""
    return not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))

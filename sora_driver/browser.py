"""Finding, launching and recycling Chromium: the one place a browser is started.

Order: ``SORA_BROWSER_PATH`` (an explicit setting), Playwright's own Chromium when it was
installed with ``python -m playwright install chromium``, then a system Chromium or Chrome.
Playwright's browser download does not work everywhere (closed networks, some distributions),
so a distribution's ``chromium`` package is a first-class choice.

Shared by every web backend (and ``login``): it knows nothing of any site.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from loguru import logger
from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from sora_driver.diagnostics import said
from sora_driver.errors import PageError

SYSTEM_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Keep Chromium from calling home: on a closed network these requests fail by the dozen,
# and on an open one they only add noise and start-up time.
QUIET_FLAGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


class BrowserNotFound(RuntimeError):
    pass


def playwright_chromium() -> Path | None:
    """Playwright's downloaded Chromium, if there is one (no browser is launched)."""
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            path = Path(pw.chromium.executable_path)
    except Exception:  # a broken Playwright install just means "not this one"
        return None
    return path if path.is_file() else None


def find_browser(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrowserNotFound(f"SORA_BROWSER_PATH={explicit} is not an executable file")
        return path
    bundled = playwright_chromium()
    if bundled is not None:
        return bundled
    for name in SYSTEM_BROWSERS:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise BrowserNotFound(
        "no Chromium found: set SORA_BROWSER_PATH, run `python -m playwright install chromium`, "
        "or install your distribution's chromium package"
    )


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def launch_args() -> list[str]:
    """Chromium refuses to start its sandbox as root; only then do we turn it off. (Playwright
    turns it off too unless launched with ``chromium_sandbox=not running_as_root()``.)"""
    return [*QUIET_FLAGS, "--no-sandbox"] if running_as_root() else list(QUIET_FLAGS)


def launch(pw: Playwright, executable: Path, headless: bool) -> Browser:
    """Chromium (from ``find_browser``, called before Playwright starts: it may start one of
    its own to ask for its browser), launched quietly, sandboxed unless we run as root."""
    logger.debug("launching {} (headless={})", executable, headless)
    return pw.chromium.launch(
        executable_path=str(executable),
        headless=headless,
        args=launch_args(),
        chromium_sandbox=not running_as_root(),
    )


def release_freed_memory() -> None:
    """Hand the heap freed with the old browser's objects back to the system. Python's
    allocator keeps it otherwise, and the daemon's RSS creeps up over weeks of restarts."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass(frozen=True)
class BrowserOptions:
    browser_path: str | None = None
    headless: bool = True
    page_timeout: float = 30.0  # the context's default bound on a page, element or request
    recycle_after: int = 0  # jobs per browser (restarted after that many); 0: never


class WarmBrowser:
    """One Chromium kept for the life of a daemon, with one context that carries the saved
    session (a Playwright storage state file)."""

    def __init__(self, storage_state: Path, options: BrowserOptions) -> None:
        self.storage_state = storage_state
        self.options = options
        self.jobs = 0  # jobs done in this browser, for ``recycle_due``
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None

    @property
    def context(self) -> BrowserContext:
        if self._context is None:
            raise PageError("the browser is not started")
        return self._context

    @property
    def connected(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    @property
    def has_context(self) -> bool:
        """False after a start that failed half-way (``new_context`` mends that)."""
        return self._context is not None

    @property
    def recycle_due(self) -> bool:
        """A new browser every ``recycle_after`` jobs keeps memory flat over weeks. The whole
        of it: a fresh context alone left Playwright's own driver process growing (about 9 MB
        per 100 jobs)."""
        every = self.options.recycle_after
        return bool(every) and self.jobs >= every

    def start(self) -> None:
        """Raises ``BrowserNotFound``, or ``PageError`` when Chromium does not start."""
        executable = find_browser(self.options.browser_path)
        self._pw = sync_playwright().start()
        try:
            self._browser = launch(self._pw, executable, self.options.headless)
            self.new_context()
        except PlaywrightError as exc:
            raise PageError(f"the browser did not start: {said(exc)}") from None
        self.jobs = 0

    def new_context(self) -> None:
        if self._browser is None:
            raise PageError("the browser is not started")
        self._context = self._browser.new_context(
            storage_state=str(self.storage_state), accept_downloads=True
        )
        self._context.set_default_timeout(self.options.page_timeout * 1000)

    def close(self) -> None:
        for closer in (self._context, self._browser):
            if closer is not None:
                # Already gone is fine: closing is all we wanted.
                with contextlib.suppress(PlaywrightError):
                    closer.close()
        if self._pw is not None:
            with contextlib.suppress(PlaywrightError):
                self._pw.stop()
        self._pw = self._browser = self._context = None


def main() -> int:
    """``python -m sora_driver.browser``: print the browser that would be used."""
    try:
        print(find_browser(os.environ.get("SORA_BROWSER_PATH")))
    except BrowserNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a browser backend leaves behind to explain itself: a capture of the page when a step
fails (``Diagnostics.run``), a screenshot at each step in debug mode, and words that never
carry a secret: Playwright's first line only, URLs without their query, and captured HTML with
its tokens blanked out, readable by its owner alone (a page holds its own bearer token).

Shared by every web backend: it knows pages and files, nothing of any site.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from loguru import logger
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from sora_driver.errors import PageError
from sora_watcher.errors import GenerationError, Interrupted

SCREENSHOT_TIMEOUT_MS = 5000
SECRETS = (  # what a page's HTML may hold that opens the account: (pattern, replacement)
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I), r"\1[redacted]"),
    (re.compile(r'("accessToken"\s*:\s*")[^"]*(")'), r"\1[redacted]\2"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){0,2}"), "[redacted JWT]"),
)
T = TypeVar("T")


class Site(Protocol):
    """What ``Diagnostics.run`` needs of a page object."""

    page: Page | None

    def forget(self) -> None: ...
    def check_stop(self) -> None: ...


def said(exc: PlaywrightError) -> str:
    """Playwright's own first line. Its "Call log" that follows repeats the request headers,
    cookies included, so it never goes further than this."""
    lines = exc.message.split("Call log:")[0].strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def short_url(url: str) -> str:
    """A URL without its query: signed URLs carry credentials that have no place in a log."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def redacted(html: str) -> str:
    """``html`` without bearer tokens, ``"accessToken"`` values or JWT-shaped strings."""
    for pattern, replacement in SECRETS:
        html = pattern.sub(replacement, html)
    return html


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` readable by its owner alone (mode 0600, even over an older file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(data)


class Diagnostics:
    """Captures in ``folder``; the step screenshots only when ``debug`` is on."""

    def __init__(self, folder: Path, debug: bool = False) -> None:
        self.folder = folder
        self.debug = debug
        self.steps = 0  # numbered across pages, so that the files sort in the order taken

    def capture(self, page: Page | None, label: str, error: GenerationError) -> None:
        """A screenshot and the HTML of the page, named in the error so the log points at them."""
        if page is None or page.is_closed():
            return
        base = self._base(label)
        try:
            shot = page.screenshot(full_page=True, timeout=SCREENSHOT_TIMEOUT_MS)
            html = redacted(page.content())
        except PlaywrightError as exc:
            logger.debug("no diagnosis saved: {}", said(exc))
            return
        write_private(Path(f"{base}.png"), shot)
        write_private(Path(f"{base}.html"), html.encode("utf-8"))
        error.detail += f" [capture: {base}.png, {base}.html]"

    def run(self, site: Site, label: str, step: Callable[[], T]) -> T:
        """Run a step; on failure keep a capture of the page and start the next one afresh."""
        try:
            return step()
        except Interrupted:
            site.forget()
            raise
        except PlaywrightError as exc:
            error: GenerationError = PageError(f"browser: {said(exc)}")
        except GenerationError as exc:
            error = exc
        if isinstance(error, PageError):
            # Ctrl-C in a terminal reaches Chromium too: a browser that died because we are
            # stopping is an interruption, not a failure to retry.
            site.check_stop()
        self.capture(site.page, label, error)
        site.forget()  # a new page next time; the tasks' deadlines go on
        raise error

    def step(self, page: Page, name: str) -> None:
        """In debug mode, a log line and a screenshot (once the page has an address)."""
        if not self.debug:
            return
        self.steps += 1
        logger.debug("step {}: {} ({})", self.steps, name, short_url(page.url))
        if page.url.startswith("http"):
            shot = Path(f"{self._base(name)}_step{self.steps:03d}_{name}.png")
            with contextlib.suppress(PlaywrightError):
                write_private(shot, page.screenshot(timeout=SCREENSHOT_TIMEOUT_MS))

    def _base(self, label: str) -> Path:
        """A file name of the time and a digest of ``label`` (a prompt may be any text)."""
        stamp = time.strftime("%Y%m%d_%H%M%S")
        digest = hashlib.sha256(label.encode()).hexdigest()[:5]
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{stamp}_{digest}"

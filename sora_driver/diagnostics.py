"""What a browser backend leaves behind to explain itself: a capture of the page when a step
fails, a screenshot at each step in debug mode, and log words that never carry a secret.

Shared by every web backend: it knows pages and files, nothing of any site.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from pathlib import Path
from urllib.parse import urlsplit

from loguru import logger
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from sora_watcher.errors import GenerationError

SCREENSHOT_TIMEOUT_MS = 5000


def said(exc: PlaywrightError) -> str:
    """Playwright's own first line. Its "Call log" that follows repeats the request headers,
    cookies included, so it never goes further than this."""
    lines = exc.message.split("Call log:")[0].strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def short_url(url: str) -> str:
    """A URL without its query: signed URLs carry credentials that have no place in a log."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


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
            page.screenshot(path=f"{base}.png", full_page=True, timeout=SCREENSHOT_TIMEOUT_MS)
            Path(f"{base}.html").write_text(page.content(), encoding="utf-8")
        except PlaywrightError as exc:
            logger.debug("no diagnosis saved: {}", said(exc))
            return
        error.detail += f" [capture: {base}.png, {base}.html]"

    def step(self, page: Page, name: str) -> None:
        """In debug mode, a log line and a screenshot (once the page has an address)."""
        if not self.debug:
            return
        self.steps += 1
        logger.debug("step {}: {} ({})", self.steps, name, short_url(page.url))
        if page.url.startswith("http"):
            shot = f"{self._base(name)}_step{self.steps:03d}_{name}.png"
            with contextlib.suppress(PlaywrightError):
                page.screenshot(path=shot, timeout=SCREENSHOT_TIMEOUT_MS)

    def _base(self, label: str) -> Path:
        """A file name of the time and a digest of ``label`` (a prompt may be any text)."""
        stamp = time.strftime("%Y%m%d_%H%M%S")
        digest = hashlib.sha256(label.encode()).hexdigest()[:5]
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{stamp}_{digest}"

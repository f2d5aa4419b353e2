"""The site's page in the browser: opened once, kept while it works, dropped after a failure.

Its own requests are noted as they finish (the submission's answer, its polling of the task
list), to be read later on the driver's thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Request
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from sora_driver.browser import WarmBrowser
from sora_driver.classify import check_page_state
from sora_driver.diagnostics import Diagnostics, said
from sora_driver.errors import PageError
from sora_driver.sora_api import is_submit, is_task_update
from sora_watcher.errors import GenerationError, Interrupted

T = TypeVar("T")
SLICE_SECONDS = 0.5  # longest time between two looks at the stop flag
MIN_WAIT_SECONDS = 0.01  # a Playwright timeout of 0 would mean no timeout at all
LOGIN_MARKERS = ("/login", "/auth/", "auth.openai.com")
MAX_UNREAD_UPDATES = 50


class SitePage:
    def __init__(
        self,
        base_url: str,
        browser: WarmBrowser,
        diagnostics: Diagnostics,
        stop: threading.Event,
    ) -> None:
        self.base_url = base_url
        self.browser = browser
        self.diagnostics = diagnostics
        self.stop = stop
        self.page: Page | None = None
        self.origin = base_url.rstrip("/")  # the site's, once redirects are followed
        self.user_agent = ""  # the browser's
        # Requests whose answer arrived in full. Only those: Playwright waits forever for the
        # body of an answer the page never finished reading.
        self.submits: list[Request] = []
        self.submit_sent = False  # the page sent its POST (maybe unanswered yet)
        self._task_updates: list[Request] = []

    def open(self) -> Page:
        """The page, loaded now if there is none (or it was closed)."""
        if self.page is not None and not self.page.is_closed():
            return self.page
        page = self.browser.context.new_page()
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_finished)
        self.diagnostics.step(page, "open")
        try:
            page.goto(self.base_url, wait_until="domcontentloaded")
        except PlaywrightError as exc:
            page.close()
            raise PageError(f"could not load {self.base_url}: {said(exc)}") from None
        self.page = page
        parts = urlsplit(page.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"  # the site may have redirected us
        check_page_state(page, LOGIN_MARKERS)
        if not self.user_agent:
            with contextlib.suppress(PlaywrightError):
                self.user_agent = str(page.evaluate("navigator.userAgent"))
        self.diagnostics.step(page, "loaded")
        return page

    def forget(self, close: bool = True) -> None:
        """After a failure, or with the browser gone (``close`` False: nothing left to
        close): a new page next time."""
        if self.page is not None and close:
            with contextlib.suppress(PlaywrightError):
                self.page.close()
        self.page = None
        self.submits.clear()
        self._task_updates.clear()

    def expect_submit(self) -> None:
        """Forget earlier submissions: the next answer noted is this one's."""
        self.submits.clear()
        self.submit_sent = False

    def task_updates(self) -> list[Request]:
        """The page's polls of its tasks since the last call, oldest first."""
        updates, self._task_updates = self._task_updates, []
        return updates

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted()

    def wait_for_network(self, seconds: float) -> None:
        """Return at the page's next network answer, or after ``seconds``, whichever is first."""
        self.check_stop()
        if self.page is None:
            raise PageError("no page to wait on")
        with contextlib.suppress(PlaywrightTimeout):
            timeout_ms = max(seconds, MIN_WAIT_SECONDS) * 1000
            self.page.wait_for_event("requestfinished", timeout=timeout_ms)
        self.check_stop()

    def wait_until(
        self,
        ready: Callable[[], T | None],
        seconds: float,
        on_timeout: Callable[[], GenerationError],
    ) -> T:
        deadline = time.monotonic() + seconds
        while (value := ready()) is None:
            if time.monotonic() >= deadline:
                raise on_timeout()
            self.wait_for_network(min(SLICE_SECONDS, deadline - time.monotonic()))
        return value

    def _on_request(self, request: Request) -> None:
        if is_submit(request):
            self.submit_sent = True

    def _on_finished(self, request: Request) -> None:
        # Runs on Playwright's dispatcher: only note the request, read its answer later.
        if is_submit(request):
            self.submits.append(request)
        elif is_task_update(request):
            self._task_updates.append(request)
            del self._task_updates[:-MAX_UNREAD_UPDATES]  # an idle page must not pile them up

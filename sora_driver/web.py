"""The Sora web app driven in a real Chromium, as a user would drive it.

A facade over its parts, each in its own module: the browser (``browser``), the saved session
(``session``), the site's answers (``sora_api``), the page and its composer (``site_page``,
``composer``), the tasks in flight (``tracker``), the images (``downloads``) and what is left
to explain a failure (``diagnostics``). Here: the order of the steps, and what a failed step
leaves behind (a capture of the page, a new page next time; the tasks' deadlines go on).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from loguru import logger
from playwright.sync_api import Page

from sora_driver.browser import (
    BrowserNotFound,
    BrowserOptions,
    WarmBrowser,
    release_freed_memory,
)
from sora_driver.composer import SORA_PROFILE, Composer
from sora_driver.diagnostics import Diagnostics
from sora_driver.downloads import Downloads
from sora_driver.errors import PageError
from sora_driver.locate import Profile
from sora_driver.session import check_saved
from sora_driver.site_page import SLICE_SECONDS, SitePage
from sora_driver.sora_api import SoraApi, finished_task_error
from sora_driver.tracker import TaskTracker
from sora_watcher.backends.base import Generation, JobOptions

__all__ = ["DriverConfig", "SoraWebDriver"]

CLOCK_SLACK_SECONDS = 30.0  # our clock and the site's may disagree a little
T = TypeVar("T")


@dataclass(frozen=True)
class DriverConfig:
    base_url: str
    session_file: Path
    timeout: float = 60.0  # bound on one generation's wait
    page_timeout: float = 30.0  # bound on a page load, an element, a download
    headless: bool = True
    browser_path: str | None = None
    selectors_file: Path | None = None
    debug: bool = False
    artifacts_dir: Path = Path("debug_screenshots")
    recycle_after: int = 50  # jobs per browser (restarted after that many); 0: never


class SoraWebDriver:
    """One warm browser for the life of the daemon: ``submit`` sends a prompt, ``finished``
    says which tasks are done, ``collect`` downloads a task's images."""

    def __init__(self, config: DriverConfig, stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.browser = WarmBrowser(
            config.session_file,
            BrowserOptions(
                config.browser_path, config.headless, config.page_timeout, config.recycle_after
            ),
        )
        self.diagnostics = Diagnostics(config.artifacts_dir, config.debug)
        self.site = SitePage(config.base_url, self.browser, self.diagnostics, self.stop)
        self.api = SoraApi(self.browser, self.site.origin)
        self.composer = Composer(
            self.site,
            self.api,
            Profile(SORA_PROFILE, config.selectors_file),
            self.diagnostics,
            config.page_timeout,
        )
        self.downloads = Downloads(self.browser, config.page_timeout, self.stop)
        self.tracker = TaskTracker(self.api, config.timeout, on_succeeded=self.downloads.prefetch)

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Launch the browser with the saved session and check the site accepts it."""
        check_saved(self.config.session_file)
        self.browser.start()
        self.downloads.browser_started()
        self.check_session()

    def close(self) -> None:
        self.browser.close()
        self.site.forget(close=False)

    def check_session(self) -> None:
        body = self.api.session()
        logger.info("Sora session valid (expires {})", body.get("expires", "?"))

    def _ensure_browser(self) -> None:
        if not self.browser.connected:
            logger.warning("the browser is gone; launching a new one")
            self._relaunch()
        elif not self.browser.has_context:  # a start that failed half-way
            self.browser.new_context()
            self.site.forget(close=False)

    def _recycle_if_due(self) -> None:
        """A fresh browser every SORA_RECYCLE_AFTER jobs: done while tracking tasks if any
        are in flight, since they go on running on the site while the browser starts (about
        2 s); else before the next submission."""
        if self.browser.recycle_due:
            logger.info("restarting the browser after {} jobs", self.browser.jobs)
            self._relaunch()
            release_freed_memory()

    def _relaunch(self) -> None:
        """Close what is left of the browser and launch a new one. Tasks in flight live on
        the site, not in the browser: they are tracked on from the new page, deadlines kept.
        """
        self.site.forget()
        self.close()
        try:
            self.open()
        except BrowserNotFound as exc:  # removed under a running daemon: say so, retry later
            raise PageError(str(exc)) from None

    def _page(self) -> Page:
        """The site's page, with what its loading taught the other parts."""
        page = self.site.open()
        self.api.origin = self.site.origin  # the site may have redirected us
        self.downloads.user_agent = self.site.user_agent
        return page

    # -- one generation: submit, then collect ----------------------------------------------

    def submit(self, prompt: str, options: JobOptions) -> str:
        def through_the_page() -> str:
            self._ensure_browser()
            self._recycle_if_due()
            task_id = self.composer.submit(self._page(), prompt, options)
            self.tracker.submitted(task_id)
            return task_id

        return self._guarded(prompt, through_the_page)

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        def track() -> list[str]:
            self._ensure_browser()
            self._recycle_if_due()  # best while tasks are in flight: they go on meanwhile
            return self._wait_for_done(task_ids, wait)

        return self._guarded("tasks", track)

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        def wait_and_download() -> Generation:
            started = time.time()
            while not self._wait_for_done([task_id], SLICE_SECONDS):
                pass  # returns the task once it is done or past its deadline
            task = self.tracker.outcome(task_id)
            finished_error = finished_task_error(task)
            if finished_error is not None:
                raise finished_error
            waited = time.time()
            wanted = task.generations[: options.variants]
            images = [self.downloads.image(task_id, i, p) for i, p in enumerate(wanted)]
            self.browser.jobs += 1
            return Generation(
                task_id,
                images,
                {"wait": round(waited - started, 3), "download": round(time.time() - waited, 3)},
            )

        try:
            return self._guarded(task_id, wait_and_download)
        finally:
            self.downloads.forget(task_id)

    def find_task(self, prompt: str, since: float) -> str | None:
        def search_the_task_list() -> str | None:
            self._ensure_browser()
            for task in self.api.task_list():  # newest first
                if task.prompt == prompt and task.created_at >= since - CLOCK_SLACK_SECONDS:
                    return task.id
            return None

        return self._guarded(prompt, search_the_task_list)

    def _wait_for_done(self, task_ids: list[str], wait: float) -> list[str]:
        """Which of these tasks need no more waiting (``TaskTracker.done``), waiting up to
        ``wait`` seconds for one, on the page's own polling of the task list."""
        self._ensure_browser()
        self._page()  # its own polling tells us when tasks are done
        self.tracker.track(task_ids)
        until = time.monotonic() + wait
        while True:
            seen_at = time.monotonic()  # before reading them: a duration never counts our work
            self.tracker.take(self.api.updates(self.site.task_updates()), seen_at)
            self.tracker.poll_if_due(task_ids)
            now = time.monotonic()
            done = self.tracker.done(task_ids)
            if done or now >= until:
                return done
            next_poll = self.tracker.next_poll_at(task_ids)
            self.site.wait_for_network(min(SLICE_SECONDS, until - now, next_poll - now))

    def _guarded(self, label: str, step: Callable[[], T]) -> T:
        return self.diagnostics.run(self.site, label, step)

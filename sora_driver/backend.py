"""The Sora web backend as the daemon sees it: ``SORA_BACKEND=web``.

The site closed on 2026-04-26; this backend is kept for its stand-in, as the base of our
browser automation, and for any site that still serves the same app. Its settings are its
own section, ``sora_driver.settings`` (``SORA_BASE_URL``, ``SORA_SESSION_FILE`` ...).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from sora_driver.login import login as login_by_hand
from sora_driver.session import SessionGuard, accepted, is_private
from sora_driver.settings import from_settings
from sora_driver.sora_api import ASPECT_RATIOS
from sora_driver.web import DriverConfig, SoraWebDriver
from sora_watcher.backends.base import Capabilities, Generation, JobOptions
from sora_watcher.config import Settings
from sora_watcher.status import age

CAPABILITIES = Capabilities(
    aspect_ratios=tuple(ASPECT_RATIOS),
    variants=(1, 2, 4),
    default_in_flight=1,
    max_in_flight=3,  # Sora runs about 3 generations at once per account
    follows_tasks=True,
)


def capabilities(settings: Settings, environ: Mapping[str, str]) -> Capabilities:
    """What the site takes; reading the section here reports a wrong value at start-up."""
    web = from_settings(settings, environ)
    # a submit and a download may each wait for pages and elements
    return dataclasses.replace(CAPABILITIES, busy_seconds=3 * web.page_timeout)


class SoraWebBackend:
    """The driver, with a way back from its session errors (``SessionGuard``)."""

    def __init__(self, driver: SoraWebDriver, session_file: Path) -> None:
        self.driver = driver
        self.session_file = session_file
        self._guarded = SessionGuard(session_file, "Sora")

    def open(self) -> None:
        self._guarded(self.driver.open)

    def submit(self, prompt: str, options: JobOptions) -> str:
        return self._guarded(lambda: self.driver.submit(prompt, options))

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        return self._guarded(lambda: self.driver.finished(task_ids, wait))

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        return self._guarded(lambda: self.driver.collect(task_id, options))

    def find_task(self, prompt: str, since: float) -> str | None:
        return self._guarded(lambda: self.driver.find_task(prompt, since))

    def close(self) -> None:
        self.driver.close()


def create(
    settings: Settings, environ: Callable[[], Mapping[str, str]], stop: threading.Event
) -> SoraWebBackend:
    web = from_settings(settings, os.environ)  # fixed at start, like the core's settings
    driver = SoraWebDriver(
        DriverConfig(
            base_url=web.base_url,
            session_file=web.session_file,
            timeout=settings.timeout,
            page_timeout=web.page_timeout,
            headless=web.headless,
            browser_path=web.browser_path,
            selectors_file=web.selectors,
            debug=settings.debug,
            artifacts_dir=web.debug_dir,
            recycle_after=web.recycle_after,
        ),
        stop,
    )
    backend = SoraWebBackend(driver, web.session_file)
    try:
        backend.open()
    except BaseException:
        driver.close()
        raise
    return backend


def login(settings: Settings) -> int:
    web = from_settings(settings, os.environ)  # the command line loaded .env into it
    return login_by_hand(web.base_url, web.session_file, web.browser_path)


def status(settings: Settings, environ: Mapping[str, str], offline: bool) -> tuple[list[str], bool]:
    """The saved session: there, private, and (unless ``offline``) accepted by the site."""
    web = from_settings(settings, environ)
    session = web.session_file
    lines = [f"backend: web, {web.base_url}"]
    if not session.is_file():
        return [*lines, f"session: {session} is missing: run `sora-watcher login`"], False
    private = "" if is_private(session) else " (readable by others: chmod 600 it)"
    saved = age(time.time() - session.stat().st_mtime)
    lines.append(f"session: {session}, saved {saved} ago{private}")
    if offline:
        return lines, True
    ok, words = accepted(session, web.base_url, web.page_timeout)
    return [*lines, f"  {words}"], ok

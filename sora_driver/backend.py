"""The Sora web backend as the daemon sees it: ``SORA_BACKEND=web``.

The site closed on 2026-04-26; this backend is kept for its stand-in, as the base of our
browser automation, and for any site that still serves the same app. Its settings are the
browser ones of ``Settings`` (``SORA_BASE_URL``, ``SORA_SESSION_FILE``, ``SORA_HEADLESS`` ...).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from sora_driver.errors import SessionExpired, SessionMissing
from sora_driver.login import login as login_by_hand
from sora_driver.web import ASPECT_RATIOS, DriverConfig, SoraWebDriver
from sora_watcher.backends.base import Capabilities, Generation, JobOptions
from sora_watcher.config import Settings
from sora_watcher.errors import Fingerprint, QueueStopError, Resume
from sora_watcher.folders import fingerprint
from sora_watcher.status import age

T = TypeVar("T")
CAPABILITIES = Capabilities(
    aspect_ratios=tuple(ASPECT_RATIOS),
    variants=(1, 2, 4),
    default_in_flight=1,
    max_in_flight=3,  # Sora runs about 3 generations at once per account
    follows_tasks=True,
)


def capabilities(settings: Settings, environ: Mapping[str, str]) -> Capabilities:
    return CAPABILITIES


class SoraWebBackend:
    """The driver, with a way back from its session errors: the queue resumes when
    session.json is replaced (the daemon does not know what a session is)."""

    def __init__(self, driver: SoraWebDriver, settings: Settings) -> None:
        self.driver = driver
        self.settings = settings
        self.opened: Fingerprint | None = fingerprint(settings.session_file)

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

    def _guarded(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except (SessionMissing, SessionExpired) as exc:
            raise self._with_resume(exc) from None

    def _with_resume(self, error: QueueStopError) -> QueueStopError:
        session = self.settings.session_file
        error.resume = Resume(
            file=session,
            seen=self.opened,
            hint=f"log in to Sora by hand and save a new {session}; the queue resumes by itself",
        )
        return error


def create(
    settings: Settings, environ: Callable[[], Mapping[str, str]], stop: threading.Event
) -> SoraWebBackend:
    driver = SoraWebDriver(
        DriverConfig(
            base_url=settings.base_url,
            session_file=settings.session_file,
            timeout=settings.timeout,
            page_timeout=settings.page_timeout,
            headless=settings.headless,
            browser_path=settings.browser_path,
            selectors_file=settings.selectors,
            debug=settings.debug,
            artifacts_dir=settings.debug_dir,
            recycle_after=settings.recycle_after,
        ),
        stop,
    )
    backend = SoraWebBackend(driver, settings)
    try:
        backend.open()
    except BaseException:
        driver.close()
        raise
    return backend


def login(settings: Settings) -> int:
    return login_by_hand(settings.base_url, settings.session_file, settings.browser_path)


def status(settings: Settings, environ: Mapping[str, str], offline: bool) -> tuple[list[str], bool]:
    """The saved session: there, private, and (unless ``offline``) accepted by the site."""
    session = settings.session_file
    lines = [f"backend: web, {settings.base_url}"]
    if not session.is_file():
        return [*lines, f"session: {session} is missing: run `sora-watcher login`"], False
    stat = session.stat()
    private = "" if stat.st_mode & 0o077 == 0 else " (readable by others: chmod 600 it)"
    lines.append(f"session: {session}, saved {age(time.time() - stat.st_mtime)} ago{private}")
    if offline:
        return lines, True
    accepted, words = session_accepted(settings)
    return [*lines, f"  {words}"], accepted


def session_accepted(settings: Settings) -> tuple[bool, str]:
    """Ask the site's own session endpoint, with the saved cookies but without a browser."""
    url = settings.base_url + "/api/auth/session"
    try:
        with sync_playwright() as pw:
            context = pw.request.new_context(storage_state=str(settings.session_file))
            response = context.get(url, timeout=settings.page_timeout * 1000)
            text = response.text()
            context.dispose()
    except PlaywrightError as exc:
        return False, f"could not ask {url}: {exc.message.splitlines()[0]}"
    with contextlib.suppress(ValueError):
        body = json.loads(text)
        if isinstance(body, dict) and body.get("user"):
            return True, f"accepted by {settings.base_url} (expires {body.get('expires', '?')})"
    return False, f"refused by {settings.base_url} (answer {text.strip()[:30]!r}): log in again"

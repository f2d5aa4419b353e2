"""The Sora web backend as the daemon sees it: ``SORA_BACKEND=web``.

The site closed on 2026-04-26; this backend is kept for its stand-in, as the base of our
browser automation, and for any site that still serves the same app. Its settings are its
own section, ``sora_driver.settings`` (``SORA_BASE_URL``, ``SORA_SESSION_FILE`` ...).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping

from sora_driver.guarded import GuardedBackend
from sora_driver.login import login as login_by_hand
from sora_driver.session import site_of, status_lines
from sora_driver.settings import from_settings
from sora_driver.sora_api import ASPECT_RATIOS
from sora_driver.web import DriverConfig, SoraWebDriver
from sora_watcher.backends.base import Capabilities
from sora_watcher.config import Settings

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


def create(
    settings: Settings, environ: Callable[[], Mapping[str, str]], stop: threading.Event
) -> GuardedBackend:
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
    return GuardedBackend(driver, web.session_file, "Sora").opened()


def login(settings: Settings) -> int:
    web = from_settings(settings, os.environ)  # the command line loaded .env into it
    return login_by_hand(web.base_url, web.session_file, web.browser_path)


def status(settings: Settings, environ: Mapping[str, str], offline: bool) -> tuple[list[str], bool]:
    """The saved session: there, private, and (unless ``offline``) accepted by the site."""
    web = from_settings(settings, environ)
    site = site_of(web.base_url)
    lines, ok = status_lines(web.session_file, web.base_url, site, web.page_timeout, offline)
    return [f"backend: web, {web.base_url}", *lines], ok

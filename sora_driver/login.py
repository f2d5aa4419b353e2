"""``sora-watcher login``: a person logs in by hand in a real window; we only save the session.

Shared by every web backend. The session is saved as soon as the site's own session endpoint
answers with a user, or when the person presses Enter. It is written with mode 0600, through a
temporary file, so a half-written or world-readable session never exists. Nothing of it is
printed.
"""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path

from loguru import logger
from playwright.sync_api import BrowserContext, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from sora_driver import session
from sora_driver.browser import find_browser, launch

CHECK_SECONDS = 1.0


def session_user(context: BrowserContext, base_url: str) -> str | None:
    """Who the site says is logged in, or None."""
    try:
        return session.ask(context.request, base_url).user
    except PlaywrightError:  # the site cannot be asked (yet): not logged in, ask again later
        return None


def enter_pressed() -> bool:
    if not sys.stdin or sys.stdin.closed or not sys.stdin.isatty():
        return False  # no one to press it (a service, a test): wait for the site instead
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(ready) and sys.stdin.readline() != ""


def save_session(context: BrowserContext, session_file: Path) -> None:
    session_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = session_file.with_name(f".{session_file.name}.part")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)  # created private before anything secret is written into it
    context.storage_state(path=temporary)
    os.chmod(temporary, 0o600)
    temporary.replace(session_file)


def login(
    base_url: str,
    session_file: Path,
    browser_path: str | None,
    timeout: float = 600,
    site: str = "Sora",
) -> int:
    """Wait for a person to log in to ``site`` (its name in the words printed) at ``base_url``;
    0 once the session is saved."""
    executable = find_browser(browser_path)
    with sync_playwright() as pw:
        browser = launch(pw, executable, headless=False)
        state = str(session_file) if session_file.is_file() else None
        context = browser.new_context(storage_state=state)
        page = context.new_page()
        page.goto(base_url)
        print(
            f"Log in to {site} in the browser window ({base_url}). The session is saved as soon "
            f"as {site} accepts it; you can also press Enter here when you are done.",
            flush=True,
        )
        deadline = time.monotonic() + timeout
        user = session_user(context, base_url)
        while user is None and time.monotonic() < deadline and not enter_pressed():
            page.wait_for_timeout(CHECK_SECONDS * 1000)  # the person is typing: nothing to see
            user = session_user(context, base_url)
        user = user or session_user(context, base_url)
        if user is None:
            logger.error(
                "{} does not accept this browser's session: not logged in, not saved", site
            )
            browser.close()
            return 1
        save_session(context, session_file)
        browser.close()
    logger.info("logged in as {}; session saved to {} (mode 0600)", user, session_file)
    return 0

"""Finding and launching Chromium.

Order: ``SORA_BROWSER_PATH`` (an explicit setting), Playwright's own Chromium when it was
installed with ``python -m playwright install chromium``, then a system Chromium or Chrome.
Playwright's browser download does not work everywhere (closed networks, some distributions),
so a distribution's ``chromium`` package is a first-class choice.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

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

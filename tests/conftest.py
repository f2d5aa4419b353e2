"""Shared fixtures: the stand-in of Sora, a home folder with a session, daemon processes
(started by standin_kit.process, the one way to start them), stopped after each test; real
Chromium for the stand-ins' pages; wait_for() where a test has no event to wait on; the
Hypothesis profile (``HYPOTHESIS_PROFILE=ci``: the same examples every run)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from sora_standin import StandIn
from standin_kit import process
from standin_kit.process import DaemonProcess

FAST_DELAY = 0.6  # seconds per generation in the stand-in

# On CI (.ci/run sets HYPOTHESIS_PROFILE=ci) the property tests draw the same examples every run
# and time none: a red build is this commit's, not a new draw's or a loaded machine's. As
# Hypothesis's own "ci" profile, which recent versions load when $CI is set: unset, the variable
# leaves their choice alone. Loaded here, before the test modules' @settings read it.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
if "HYPOTHESIS_PROFILE" in os.environ:
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StandIn]:
    with StandIn(delay=FAST_DELAY).start() as server:
        yield server


@pytest.fixture
def standin(standin_server: StandIn) -> Iterator[StandIn]:
    standin_server.delay = FAST_DELAY
    before = len(standin_server.submissions)
    yield standin_server
    standin_server.delay = FAST_DELAY
    del before


@pytest.fixture
def site_session(standin: StandIn) -> dict[str, Any]:
    """The session saved in `home`: one for the stand-in of Sora. A test module of another
    site overrides this fixture with its own stand-in's storage_state()."""
    return standin.storage_state()


@pytest.fixture
def home(tmp_path: Path, site_session: dict[str, Any]) -> Path:
    """A daemon home with the runtime folders' parent, a valid session and an empty inbox."""
    (tmp_path / "inbox").mkdir()
    session = tmp_path / "session.json"
    session.write_text(json.dumps(site_session), encoding="utf-8")
    session.chmod(0o600)
    return tmp_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Real Chromium, found and launched as the daemon does; one per test module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from sora_driver.browser import BrowserNotFound, find_browser, launch

    try:
        executable = find_browser(os.environ.get("SORA_BROWSER_PATH"))  # before Playwright
    except BrowserNotFound as error:
        pytest.skip(str(error))
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright, executable, headless=True)
        yield chromium
        chromium.close()


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds (for what
    has no event to wait on, such as the stand-ins' clocks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


# What every test daemon runs with unless its test says otherwise: short waits, one worker.
# The tests write their inputs whole (or under a hidden name, then rename): a short settle is
# enough (the default waits up to 2 s before claiming a file just written).
TEST_SETTINGS = {
    "SORA_TIMEOUT": "30",
    "SORA_RETRY_DELAY": "0.2",
    "SORA_WORKER_ID": "w1",
    "SORA_SETTLE_SECONDS": "0.3",
}


def daemon_env(home: Path, standin: StandIn, **extra: str) -> dict[str, str]:
    """The web backend against the stand-in of Sora, with the tests' settings."""
    return process.daemon_env(home, standin.base_url, **{**TEST_SETTINGS, **extra})


def drop(inbox: Path, name: str, text: str) -> Path:
    """Publish an input the way a careful program does: write aside, then rename in."""
    temporary = inbox / f".{name}.tmp"
    temporary.write_text(text, encoding="utf-8")
    final = inbox / name
    temporary.rename(final)
    return final


class Daemon(DaemonProcess):
    """``python watcher.py ...`` in a home folder, as the tests start it, in a process group
    of its own (stop() ends it, Chromium included)."""

    def stop(self, grace: float = 0) -> int:
        """Killed at once, group and all, as before: the test has checked what it wanted, and
        a daemon waiting on a hung generation would hold the test up until its timeout."""
        return super().stop(grace)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()

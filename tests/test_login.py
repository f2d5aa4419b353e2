"""`sora-watcher login`: a real headed Chromium (under Xvfb here), never an automated login."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from sora_standin import StandIn
from standin_kit.process import PYTHON, WATCHER, run
from tests.conftest import daemon_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (a screen)"),
]


def login(home: Path, standin: StandIn) -> subprocess.CompletedProcess[str]:
    command = ["xvfb-run", "-a", PYTHON, str(WATCHER), "login"]
    return run(command, home, daemon_env(home, standin), timeout=60)


def test_login_saves_the_session_privately_once_sora_accepts_it(
    home: Path, standin: StandIn
) -> None:
    session = home / "session.json"
    session.chmod(0o644)  # a careless copy, readable by all
    secret = json.loads(session.read_text("utf-8"))["cookies"][0]["value"]

    done = login(home, standin)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Log in to Sora in the browser window" in done.stdout
    assert "logged in as demo" in done.stdout
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    saved = json.loads(session.read_text("utf-8"))
    assert any(c["name"] == "__Secure-next-auth.session-token" for c in saved["cookies"])
    assert secret not in done.stdout + done.stderr, "never print a cookie"


def test_login_without_a_session_saves_nothing(home: Path, standin: StandIn) -> None:
    (home / "session.json").unlink()
    # Nobody logs in and stdin is closed: it waits for the site until its timeout. Keep it short.
    done = run(
        ["xvfb-run", "-a", PYTHON, "-c",
         "import sora_driver.login as l, sys; from pathlib import Path; "
         f"sys.exit(l.login({standin.base_url!r}, Path('session.json'), None, timeout=3))"],
        home, daemon_env(home, standin), timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not logged in, not saved" in done.stdout + done.stderr
    assert not (home / "session.json").exists()

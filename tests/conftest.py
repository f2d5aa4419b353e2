"""Shared fixtures: the stand-in of Sora, a home folder with a session, a daemon process."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sora_standin import StandIn

ROOT = Path(__file__).resolve().parent.parent
FAST_DELAY = 0.6  # seconds per generation in the stand-in


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
def home(tmp_path: Path, standin: StandIn) -> Path:
    """A daemon home with the runtime folders' parent, a valid session and an empty inbox."""
    (tmp_path / "inbox").mkdir()
    session = tmp_path / "session.json"
    session.write_text(json.dumps(standin.storage_state()), encoding="utf-8")
    session.chmod(0o600)
    return tmp_path


def daemon_env(home: Path, standin: StandIn, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORA_")}
    env.update(
        SORA_HOME=str(home),
        SORA_BACKEND="web",
        SORA_BASE_URL=standin.base_url,
        SORA_TIMEOUT="30",
        SORA_RETRY_DELAY="0.2",
        SORA_WORKER_ID="w1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def drop(inbox: Path, name: str, text: str) -> Path:
    """Publish an input the way a careful program does: write aside, then rename in."""
    temporary = inbox / f".{name}.tmp"
    temporary.write_text(text, encoding="utf-8")
    final = inbox / name
    temporary.rename(final)
    return final


class Daemon:
    """``python watcher.py ...`` as a real process, its output read line by line."""

    def __init__(
        self, home: Path, env: dict[str, str], *args: str, own_group: bool = False
    ) -> None:
        self.home = home
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "watcher.py"), *args],
            cwd=home,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            start_new_session=own_group,  # like a terminal's foreground job
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Wait for an output line matching ``pattern``; fail with the output so far."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                line = ""
                if remaining <= 0:
                    raise AssertionError(self._failure(pattern, "timed out")) from None
            if line is None:
                raise AssertionError(self._failure(pattern, "process ended"))
            if line:
                self.output.append(line)
                match = regex.search(line)
                if match:
                    return match

    def expect_count(self, pattern: str, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` output lines, seen so far or to come, match ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while sum(bool(regex.search(line)) for line in self.output) < count:
            self.expect(pattern, timeout=max(deadline - time.monotonic(), 0.01))

    def _failure(self, pattern: str, why: str) -> str:
        return f"{why} waiting for {pattern!r}; output:\n" + "\n".join(self.output)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        """What Ctrl-C in a terminal does: the signal goes to every process of the job."""
        os.killpg(self.process.pid, signum)

    def wait(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        while (line := self.lines.get(timeout=5)) is not None:
            self.output.append(line)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()

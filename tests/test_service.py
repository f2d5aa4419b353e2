"""Running as a systemd service: sd_notify over a real socket, the watchdog heartbeat, the
status command, hooks, log rotation."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sora_standin import StandIn
from standin_kit.process import run_watcher
from tests.conftest import Daemon, daemon_env, drop

pytestmark = pytest.mark.e2e


class NotifySocket:
    """The systemd end of sd_notify: a datagram socket whose messages are kept with a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.arrived = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self.arrived:
                self.messages.append((time.monotonic(), data.decode()))
                self.arrived.notify_all()

    def wait_for(self, prefix: str, timeout: float = 30, count: int = 1) -> float:
        """When the ``count``-th message starting with ``prefix`` arrived (waiting for it)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                times = [at for at, message in self.messages if message.startswith(prefix)]
                if len(times) >= count:
                    return times[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {prefix!r} in {self.texts()}")
                self.arrived.wait(remaining)

    def texts(self) -> list[str]:
        return [m for _, m in self.messages]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def service_env(home: Path, standin: StandIn, sock: NotifySocket, **extra: str) -> dict[str, str]:
    return daemon_env(
        home,
        standin,
        SORA_BACKEND="instant",
        NOTIFY_SOCKET=str(sock.path),
        WATCHDOG_USEC="400000",  # a ping every 0.2 s
        **extra,
    )


def test_ready_status_watchdog_stopping_in_order(
    home: Path, standin: StandIn, daemons: list[Daemon], notify_socket: NotifySocket
) -> None:
    daemon = Daemon(home, service_env(home, standin, notify_socket), "run")
    daemons.append(daemon)
    ready = notify_socket.wait_for("READY=1")
    daemon.expect("watching")
    notify_socket.wait_for("STATUS=idle")
    drop(home / "inbox", "two.txt", "first prompt\nsecond prompt\n")
    notify_socket.wait_for("STATUS=generating: 2/2 of two.txt")
    daemon.expect(r"two\.txt: 2 image\(s\)")
    notify_socket.wait_for("WATCHDOG=1", count=2)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    notify_socket.wait_for("STATUS=stopped")  # sent before the exit; maybe not yet read

    texts = notify_socket.texts()
    assert texts[0] == "READY=1", "nothing before READY"
    assert texts[-1] == "STATUS=stopped" and texts[-2] == "STOPPING=1"
    assert texts.index("STATUS=generating: 1/2 of two.txt") < texts.index(
        "STATUS=generating: 2/2 of two.txt"
    )
    pings = [at for at, m in notify_socket.messages if m == "WATCHDOG=1"]
    assert len(pings) >= 2 and pings[0] >= ready, texts


def test_a_stuck_worker_stops_the_watchdog_pings(
    home: Path, standin: StandIn, daemons: list[Daemon], notify_socket: NotifySocket
) -> None:
    # SORA_TIMEOUT + the backend's busy_seconds (instant: 3) = 4 s without progress, and the
    # worker counts as stuck
    env = service_env(home, standin, notify_socket, SORA_TIMEOUT="1")
    daemon = Daemon(home, env, "run")
    daemons.append(daemon)
    notify_socket.wait_for("READY=1")
    drop(home / "inbox", "stuck.txt", "a prompt that hangs [instant:hang]\n")
    stuck_at = notify_socket.wait_for("STATUS=generating: 1/1 of stuck.txt")
    deadline = stuck_at + 8
    while time.monotonic() < deadline:
        time.sleep(0.2)  # watching the pings dry up is watching time pass
    pings = [at for at, m in notify_socket.messages if m == "WATCHDOG=1"]
    assert any(at < stuck_at + 3 for at in pings), "pings went on for a while"
    assert not any(at > stuck_at + 5 for at in pings), "then stopped: systemd would restart us"
    assert daemon.process.poll() is None


def status(home: Path, standin: StandIn, *args: str) -> subprocess.CompletedProcess[str]:
    return run_watcher(home, daemon_env(home, standin), "status", *args, timeout=60)


def test_status_in_each_state(home: Path, standin: StandIn, daemons: list[Daemon]) -> None:
    stopped = status(home, standin)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "daemon: not running" in stopped.stdout
    assert "accepted by" in stopped.stdout

    daemon = Daemon(home, daemon_env(home, standin, SORA_BACKEND="instant"), "run")
    daemons.append(daemon)
    daemon.expect("watching")
    drop(home / "inbox", "done.txt", "a finished prompt\n")
    daemon.expect(r"done\.txt: 1 image\(s\)")
    idle = status(home, standin, "--offline")
    assert idle.returncode == 0, idle.stdout
    assert f"daemon w1 (pid {daemon.process.pid}): idle" in idle.stdout
    assert '"a finished prompt" -> images/' in idle.stdout
    assert "processed   1" in idle.stdout and "images      1" in idle.stdout

    drop(home / "inbox", "stuck.txt", "[instant:hang]\n")
    daemon.expect(r"stuck\.txt line 1: generating")
    working = status(home, standin, "--offline")
    assert working.returncode == 0
    assert "generating (1/1 of stuck.txt)" in working.stdout
    assert "processing  1" in working.stdout
    daemon.stop()

    standin.revoke_sessions()
    refused = status(home, standin)
    assert refused.returncode == 1
    assert "refused by" in refused.stdout and "log in again" in refused.stdout

    (home / "session.json").unlink()
    missing = status(home, standin, "--offline")
    assert missing.returncode == 1 and "is missing" in missing.stdout


def test_status_says_paused_and_why(home: Path, standin: StandIn, daemons: list[Daemon]) -> None:
    standin.clear_scenarios()
    standin.scenario("rate_limit", resets_in=60)
    daemon = Daemon(home, daemon_env(home, standin), "run")
    daemons.append(daemon)
    daemon.expect("watching")
    drop(home / "inbox", "limited.txt", "a prompt over the daily limit\n")
    daemon.expect("queue paused: RateLimited")
    paused = status(home, standin, "--offline")
    assert paused.returncode == 1
    assert "paused (RateLimited: HTTP 429" in paused.stdout
    standin.clear_scenarios()


HOOK = """
import json, os, sys
with open(sys.argv[1], "a", encoding="utf-8") as out:
    env = {k: v for k, v in os.environ.items() if k in ("SORA_IMAGE", "SORA_INPUT", "SORA_PROMPT",
                                                         "SORA_TASK_ID", "SORA_ERROR")}
    out.write(json.dumps({"argv": sys.argv[2:], "env": env}) + "\\n")
"""


def test_hooks_get_their_arguments_without_a_shell(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    (home / "hook.py").write_text(HOOK, encoding="utf-8")
    calls = home / "calls.jsonl"
    nasty = 'a "quoted" $(touch pwned) ; touch pwned2 && echo `id` | cat > pwned3 \\ \' *'
    env = daemon_env(
        home,
        standin,
        SORA_BACKEND="instant",
        SORA_ON_SUCCESS=f"{sys.executable} hook.py {calls}",
        SORA_ON_FAILURE="/bin/false",
    )
    daemon = Daemon(home, env, "run")
    daemons.append(daemon)
    daemon.expect("watching")
    drop(home / "inbox", "nasty.txt", nasty + "\n")
    daemon.expect(r"nasty\.txt: 1 image\(s\)")
    [call] = [json.loads(line) for line in calls.read_text("utf-8").splitlines()]
    image, source, prompt = call["argv"]
    assert prompt == nasty and call["env"]["SORA_PROMPT"] == nasty
    assert Path(image).is_file() and Path(image).parent == home / "images"
    assert call["env"]["SORA_IMAGE"] == image and source.endswith("nasty.txt")
    assert call["env"]["SORA_TASK_ID"].startswith("task_instant_")
    assert not list(home.glob("pwned*")), "nothing ran through a shell"

    # a failing hook is logged and does not fail the job
    drop(home / "inbox", "empty.txt", "\n")
    daemon.expect(r"empty\.txt moved to .*failed")
    drop(home / "inbox", "after.txt", "still working\n")
    daemon.expect(r"after\.txt: 1 image\(s\)")


def test_a_failing_hook_never_fails_the_job(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    env = daemon_env(
        home,
        standin,
        SORA_BACKEND="instant",
        SORA_ON_SUCCESS=f"{sys.executable} -c 'import time; time.sleep(30)'",
        SORA_HOOK_TIMEOUT="1",
    )
    daemon = Daemon(home, env, "run")
    daemons.append(daemon)
    daemon.expect("watching")
    drop(home / "inbox", "slow-hook.txt", "a prompt\n")
    daemon.expect(r"hook .*python.* killed after 1s")
    daemon.expect(r"slow-hook\.txt: 1 image\(s\), moved to .*processed")


def test_log_files_rotate_and_old_ones_go(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    env = daemon_env(
        home, standin, SORA_BACKEND="instant", SORA_LOG_ROTATION="2 KB", SORA_LOG_RETENTION="3"
    )
    daemon = Daemon(home, env, "run")
    daemons.append(daemon)
    daemon.expect("watching")
    for n in range(20):
        drop(home / "inbox", f"p{n:02d}.txt", f"prompt number {n} with some words to log\n")
    daemon.expect_count(r"p\d\d\.txt: 1 image\(s\)", 20)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    files = list((home / "logs").glob("sora-watcher_*.log"))
    assert 1 < len(files) <= 4, files  # rotated, and no more than retention + the current
    assert all(f.stat().st_size < 4096 for f in files)
    text = "".join(f.read_text("utf-8") for f in files)
    assert "p19.txt: 1 image(s)" in text

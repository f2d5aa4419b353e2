"""Being a good systemd citizen: sd_notify, a watchdog heartbeat, and a status board.

sd_notify is one datagram per message to the socket named by ``$NOTIFY_SOCKET`` (a leading
``@`` means Linux's abstract namespace); without that variable it does nothing. The protocol
is a dozen lines, so it is written here rather than pulled in as a dependency.

The heartbeat pings ``WATCHDOG=1`` only while the worker makes progress: a browser call that
hangs stops the pings, and systemd restarts the service after ``WatchdogSec``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sora_watcher.atomic import write_atomically

STATUS_FILE = ".status.json"  # hidden: never taken for an input to resume


def notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with (
        contextlib.suppress(OSError),  # systemd gone: nobody to tell, nothing to fail
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
    ):
        sock.connect(address)
        sock.sendall(message.encode("utf-8"))


def watchdog_interval() -> float | None:
    """Seconds between pings: half of what systemd allows, as sd_watchdog_enabled(3) advises."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2


class Heartbeat:
    """Pings the systemd watchdog while ``progress()`` was called in the last ``stall`` s."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._last_progress = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def progress(self) -> None:
        self._last_progress = time.monotonic()

    def start(self) -> None:
        """Start pinging (once: a second call does nothing)."""
        interval = watchdog_interval()
        if interval is None or self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._beat, args=(interval,), name="heartbeat", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop pinging; when this returns no ping is on its way (systemd must get none after
        ``STOPPING=1``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if time.monotonic() - self._last_progress < self.stall_seconds:
                notify("WATCHDOG=1")


@dataclass
class Board:
    """What the daemon is doing, for ``STATUS=`` and for ``sora-watcher status``."""

    path: Path
    pid: int = field(default_factory=os.getpid)
    state: str = "starting"  # starting | idle | generating | paused | stopped
    detail: str = ""
    hint: str = ""  # what to do about a pause, in the daemon's words (its Resume.hint)
    since: float = field(default_factory=time.time)
    last_success: dict[str, Any] | None = None
    last_failure: dict[str, Any] | None = None

    def set(self, state: str, detail: str = "", hint: str = "") -> None:
        if (state, detail, hint) == (self.state, self.detail, self.hint):
            return
        self.state, self.detail, self.hint, self.since = state, detail, hint, time.time()
        notify("STATUS=" + (f"{state}: {detail}" if detail else state))
        self.save()

    def succeeded(self, prompt: str, image: str) -> None:
        self.last_success = {"time": time.time(), "prompt": prompt, "image": image}
        self.save()

    def failed(self, prompt: str, error: str) -> None:
        self.last_failure = {"time": time.time(), "prompt": prompt, "error": error}
        self.save()

    def save(self) -> None:
        data = asdict(self)
        del data["path"]
        with contextlib.suppress(OSError):  # a full disk must not stop the work over this
            data_bytes = json.dumps(data, ensure_ascii=False).encode("utf-8")
            write_atomically(self.path, data_bytes, durable=False)  # a note, not a record

    @classmethod
    def load(cls, path: Path) -> Board | None:
        try:
            data = json.loads(path.read_text("utf-8"))
            return cls(path=path, **data)
        except (OSError, ValueError, TypeError):
            return None

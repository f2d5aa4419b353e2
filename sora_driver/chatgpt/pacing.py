"""One send at a time, and ``SORA_MIN_INTERVAL`` seconds between two sends, across restarts.

The interval protects the account, so it must hold whatever happens to the process: a pause
that closes the backend and opens a new one, a kill -9, systemd restarting a daemon that
fails at once. The last send's wall-clock time is therefore kept in a small file beside the
saved session (``last_send_file``): beside the session because the interval is the account's,
and the session is the account (two homes sharing one session share its pace; a new login
keeps it). The file is read again before each wait, so that two daemons sharing one session
see each other's sends. Waited on the daemon's stop event, never a blind sleep: a stop ends the
wait at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from sora_watcher.atomic import write_atomically
from sora_watcher.errors import Interrupted

Clock = Callable[[], float]


def last_send_file(session_file: Path) -> Path:
    """``session.json`` -> ``session.json.last-send``."""
    return session_file.with_name(session_file.name + ".last-send")


class Pacer:
    """The time of the last send: written to ``path`` at each send, read from it at start and
    before each wait (another process may have sent meanwhile)."""

    def __init__(self, path: Path | None, clock: Clock = time.time) -> None:
        self.path = path  # None: kept in memory only (tests)
        self.clock = clock  # wall-clock: a monotonic clock does not survive a restart
        self.last_send = self._read()

    def due_in(self, interval: float) -> float:
        """Seconds before the next send may go (0: now). A clock set back never makes the
        wait longer than the interval."""
        if self.last_send is None:
            return 0.0
        return min(max(self.last_send + interval - self.clock(), 0.0), interval)

    def wait_turn(self, interval: float, stop: threading.Event) -> None:
        """Return when a send may go; ``Interrupted`` if ``stop`` is set meanwhile."""
        self._reread()
        wait = self.due_in(interval)
        if wait > 0:
            logger.info("waiting {:.0f}s before the next send (SORA_MIN_INTERVAL)", wait)
        while wait > 0:
            if stop.wait(wait):
                break
            self._reread()  # another daemon may have sent while we waited
            wait = self.due_in(interval)
        if stop.is_set():
            raise Interrupted()

    def sent(self) -> None:
        self.last_send = self.clock()
        if self.path is None:
            return
        try:
            write_atomically(self.path, f"{self.last_send:.3f}\n".encode())
        except OSError as exc:  # the send went; only a restart's pace is at stake
            logger.warning("could not note the send's time in {}: {}", self.path, exc)

    def _reread(self) -> None:
        """The later of our last send and the one the file holds (another daemon's)."""
        noted = self._read()
        if noted is not None and (self.last_send is None or noted > self.last_send):
            self.last_send = noted

    def _read(self) -> float | None:
        if self.path is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return float(self.path.read_text(encoding="utf-8").strip())
        return None

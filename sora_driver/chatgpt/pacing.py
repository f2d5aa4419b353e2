"""One send at a time, and ``SORA_MIN_INTERVAL`` seconds between two sends.

Waited on the daemon's stop event, never a blind sleep: a stop ends the wait at once. The
last send is the process's, not the browser's: a pause closes the backend and a new one
starts after it, and the interval holds across them (``PACER``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loguru import logger

from sora_watcher.errors import Interrupted

Clock = Callable[[], float]


class Pacer:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.last_send: float | None = None  # clock() of the last send

    def due_in(self, interval: float) -> float:
        """Seconds before the next send may go (0: now)."""
        if self.last_send is None:
            return 0.0
        return max(self.last_send + interval - self.clock(), 0.0)

    def wait_turn(self, interval: float, stop: threading.Event) -> None:
        """Return when a send may go; ``Interrupted`` if ``stop`` is set meanwhile."""
        wait = self.due_in(interval)
        if wait > 0:
            logger.info("waiting {:.0f}s before the next send (SORA_MIN_INTERVAL)", wait)
        while (wait := self.due_in(interval)) > 0:
            if stop.wait(wait):
                break
        if stop.is_set():
            raise Interrupted()

    def sent(self) -> None:
        self.last_send = self.clock()


PACER = Pacer()  # the process's: kept across the backends a pause closes and reopens

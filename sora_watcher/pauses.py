"""Waiting, alive: the heartbeat goes on and a stop request ends any wait at once.

Every wait of the worker goes through here, so that a stop (a signal handler sets the
``stop`` event, nothing more) is noticed within ``POLL_SECONDS`` wherever the worker is: a
stop during a wait raises ``Interrupted``, which the main loop takes for a clean stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loguru import logger

from sora_watcher.atomic import fingerprint
from sora_watcher.errors import Interrupted, Resume
from sora_watcher.service import Heartbeat

POLL_SECONDS = 0.5  # how often an idle worker looks at the stop flag
FILE_CHECK_SECONDS = 2.0  # how often a paused queue looks at the file it waits for


class Pauses:
    def __init__(self, stop: threading.Event, heartbeat: Heartbeat, pause_seconds: float) -> None:
        self.stop = stop
        self.heartbeat = heartbeat
        self.pause_seconds = pause_seconds  # a pause whose cause names no time of its own

    def wait(self, seconds: float) -> None:
        """Wait, alive: the heartbeat goes on, a stop request ends the wait at once."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.heartbeat.progress()
            if self.stop.wait(min(remaining, 1.0)):
                raise Interrupted()

    def wait_to_resume(self, resume: Resume) -> None:
        """Wait, alive, for what ``resume`` says (see ``Resume``)."""
        if resume.file is not None:
            logger.warning("waiting for {} to change", resume.file)
            while (now := fingerprint(resume.file)) is None or now == resume.seen:
                self.wait(FILE_CHECK_SECONDS)
        elif resume.probe is not None:
            logger.warning("trying again every {:.0f}s", resume.every)
            self.wait(resume.every)
            while not self.ask(resume.probe):
                self.wait(resume.every)
        else:
            delay = self.pause_seconds if resume.after is None else resume.after
            logger.warning("resuming in {:.0f}s", delay)
            self.wait(delay)

    def ask(self, probe: Callable[[], bool]) -> bool:
        """``probe()`` on a thread of its own, so that a slow answer never holds up a stop."""
        answer: list[bool] = []

        def run() -> None:
            try:
                answer.append(probe())
            except Exception as exc:  # a probe that fails says no, and says why
                logger.opt(exception=exc).error("the probe failed: {}", exc)

        thread = threading.Thread(target=run, name="probe", daemon=True)
        thread.start()
        while thread.is_alive():
            self.heartbeat.progress()
            if self.stop.wait(POLL_SECONDS):
                raise Interrupted()
        return answer == [True]

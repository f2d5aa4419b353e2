"""A web backend as the daemon sees it: its driver, with a way back from session errors.

Every browser backend (Sora's, ChatGPT's) is the same shape here: the driver does the work,
and a missing or refused session becomes a pause that ends when the session file is replaced
(``SessionGuard``). One class for all of them, so that a fix to the way back is made once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sora_driver.session import SessionGuard
from sora_watcher.backends.base import Generation, JobOptions


class Driver(Protocol):
    def open(self) -> None: ...
    def submit(self, prompt: str, options: JobOptions) -> str: ...
    def finished(self, task_ids: list[str], wait: float) -> list[str]: ...
    def collect(self, task_id: str, options: JobOptions) -> Generation: ...
    def find_task(self, prompt: str, since: float) -> str | None: ...
    def close(self) -> None: ...


class GuardedBackend:
    """The driver's calls, each guarded (``SessionGuard``): ``site`` is named in the hint."""

    def __init__(self, driver: Driver, session_file: Path, site: str) -> None:
        self.driver = driver
        self._guarded = SessionGuard(session_file, site)

    def open(self) -> None:
        self._guarded(self.driver.open)

    def submit(self, prompt: str, options: JobOptions) -> str:
        return self._guarded(lambda: self.driver.submit(prompt, options))

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        return self._guarded(lambda: self.driver.finished(task_ids, wait))

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        return self._guarded(lambda: self.driver.collect(task_id, options))

    def find_task(self, prompt: str, since: float) -> str | None:
        return self._guarded(lambda: self.driver.find_task(prompt, since))

    def close(self) -> None:
        self.driver.close()

    def opened(self) -> GuardedBackend:
        """Opened, or closed again if opening fails (the browser is not left behind)."""
        try:
            self.open()
        except BaseException:
            self.driver.close()
            raise
        return self

"""The tasks of ours that the service is working on, and how many may be at once.

A task is in flight from its submission until the backend says it needs no more waiting;
it is then collectable until its images are downloaded. Both count against the service's
limit of generations at once (a finished task may still count for a moment), so both are
tracked here, in the order they were sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import NamedTuple

from sora_watcher.journal import Entry, Journal


class Flight(NamedTuple):
    journal: Journal
    entry: Entry


class InFlight:
    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.concurrency = max_in_flight  # lowered for a while by the service's limit
        self.running: list[Flight] = []  # submitted, not finished yet
        self.collectable: list[Flight] = []  # finished on the service, not downloaded yet

    def has_room(self) -> bool:
        return len(self.running) < self.concurrency

    def track(self, journal: Journal, entry: Entry) -> None:
        self.running.append(Flight(journal, entry))

    def holds(self, entry: Entry) -> bool:
        """Whether ``entry`` is in flight or collectable (entries compare by identity)."""
        return any(task.entry is entry for task in self.all())

    def is_empty(self) -> bool:
        """Nothing in flight and nothing to collect: nothing of ours is paid for and pending."""
        return not self.running and not self.collectable

    def task_ids(self) -> list[str]:
        return [str(task.entry.task_id) for task in self.running]

    def mark_finished(self, done: set[str]) -> bool:
        """Those in flight whose task id is in ``done`` become collectable; True if any."""
        finished = [task for task in self.running if task.entry.task_id in done]
        if not finished:
            return False
        self.collectable += finished
        self.running = [task for task in self.running if task.entry.task_id not in done]
        return True

    def next_collectable(self) -> Flight | None:
        return self.collectable.pop(0) if self.collectable else None

    def images(self) -> int:
        """The images coming: the variants of every task in flight or collectable."""
        return sum(task.entry.job_options.variants for task in self.all())

    def drop_all(self) -> list[Flight]:
        """Forget every task (they ended with the backend that ran them); return them."""
        dropped, self.running, self.collectable = list(self.all()), [], []
        return dropped

    def narrow(self) -> int:
        """The service said too many at once: as many as are in flight now, at least one."""
        self.concurrency = max(1, len(self.running))  # a collectable task may still count
        return self.concurrency

    def widen(self) -> None:
        """A download went through: the service took one back, try one more in flight."""
        if self.concurrency < self.max_in_flight:
            self.concurrency += 1

    def all(self) -> Iterator[Flight]:
        return chain(self.running, self.collectable)

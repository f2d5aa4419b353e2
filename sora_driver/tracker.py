"""The tasks in flight: their deadlines, their latest updates, and when to poll the site.

The end of a generation is read from the task list: from the page's own polling of it (its
answers are handed to ``take``), and from polls of our own when a task may be about to finish
(the page polls at its own pace, which could add most of a second to each image); a task the
list has said nothing of for a while is asked for by its id.

Our own polls: each task is first polled for a little before it has run as long as the
quickest quarter of the last generations, then 25 ms after each answer for 0.15 s (its end is
near), then every 5 % of its age (0.1 s to 2 s): a finished task is seen within a few per cent
of its own duration. One poll covers every task in flight; a task that ends on time costs two
to four, one that runs 50 % late about ten more, one before any generation was seen about 75
(30 s long). A duration is counted up to the poll that saw the task finished, and the first
poll comes before the expected end, so that the estimate can go down as well as up. (One that
ends sooner is still seen by the page's own polling.)

Pure code: the clock and the site (``TaskSource``) are handed in, so that it is tested
without a browser and without waiting.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from loguru import logger

from sora_driver.sora_api import BrowserFailed, Task
from sora_watcher.errors import (
    GenerationError,
    GenerationTimeout,
    PermanentError,
    RateLimited,
    TransientError,
)

Clock = Callable[[], float]  # seconds, never going back (time.monotonic)

QUIET_SECONDS = 5.0  # with no update of a task for this long, ask the site for it by id
POLL_EARLY_SECONDS = 0.05
QUICK_POLL_SECONDS = 0.025
QUICK_POLLS_FOR_SECONDS = 0.15
POLL_SHARE = 0.05
MIN_POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 2.0  # also the pause after a failed poll that gave no time of its own
RECENT_GENERATIONS = 20
# Tasks are forgotten when collected; this only bounds those the daemon gave up on.
MAX_TRACKED = 50


class TaskSource(Protocol):
    """Where the tracker asks the site about tasks (``SoraApi``, or a fake in tests)."""

    def task_list(self) -> list[Task]: ...

    def task(self, task_id: str) -> Task: ...


@dataclass
class Tracked:
    """A task we wait for: its deadline and the newest state we have seen of it."""

    started: float  # clock() of its submission (or of the restart that found it)
    deadline: float  # clock() after which it counts as timed out
    updated_at: float  # when we last had an update of it
    task: Task | None = None
    error: GenerationError | None = None  # asking for it failed: its collect raises this
    polled_at: float = -math.inf  # clock() of our last own poll of the task list
    timed: bool = True  # we saw it start: its duration tells how long generations take

    @property
    def status(self) -> str | None:
        return self.task.status if self.task is not None else None

    @property
    def over(self) -> bool:
        """Nothing more to wait for: finished, or asking for it failed."""
        return self.error is not None or (self.task is not None and self.task.finished)


def poll_due(tracked: Tracked, expected: float) -> float:
    """When a task wants a poll of our own: a little before it has run ``expected`` seconds,
    then often while its end is near, then every ``POLL_SHARE`` of its age (from the start,
    before any generation was seen: ``expected`` 0)."""
    if expected > 0:
        first = tracked.started + expected - POLL_EARLY_SECONDS
        if tracked.polled_at < first:
            return first
        if tracked.polled_at < first + QUICK_POLLS_FOR_SECONDS:
            return tracked.polled_at + QUICK_POLL_SECONDS
    age = tracked.polled_at - tracked.started
    return tracked.polled_at + min(max(POLL_SHARE * age, MIN_POLL_SECONDS), MAX_POLL_SECONDS)


class TaskTracker:
    """The tasks submitted and not yet collected. ``on_succeeded`` is called once for each
    task seen succeeded (the downloads start early)."""

    def __init__(
        self,
        source: TaskSource,
        timeout: float,
        on_succeeded: Callable[[Task], None] = lambda task: None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.source = source
        self.timeout = timeout
        self.on_succeeded = on_succeeded
        self.clock = clock
        self.recent: deque[float] = deque(maxlen=RECENT_GENERATIONS)  # seconds, succeeded
        self._tracked: dict[str, Tracked] = {}
        self._polls_resume_at = -math.inf  # after a failed poll, a pause

    def submitted(self, task_id: str) -> None:
        """A task we have just submitted: its deadline runs from now, whatever happens to
        the page or the browser meanwhile."""
        now = self.clock()
        self._add(task_id, Tracked(now, now + self.timeout, now))

    def track(self, task_ids: Iterable[str]) -> None:
        """Track these too. One we did not submit (before a restart) has an unknown start:
        it is asked for at once, and its duration teaches nothing."""
        for task_id in task_ids:
            if task_id not in self._tracked:
                now = self.clock()
                tracked = Tracked(now, now + self.timeout, now, timed=False)
                self._add(task_id, tracked)
                self._refresh(task_id, tracked)

    def take(self, tasks: Iterable[Task], seen_at: float) -> None:
        """Updates of tasks (of ours or not), as the site gave them at ``seen_at``."""
        for task in tasks:
            tracked = self._tracked.get(task.id)
            if tracked is not None:
                self._update(tracked, task, seen_at)

    def poll_if_due(self, task_ids: list[str]) -> None:
        """Poll the task list ourselves if a task we wait for may have finished unseen."""
        now = self.clock()
        if now < self.next_poll_at(task_ids):
            return
        try:
            tasks = self.source.task_list()
        except (TransientError, PermanentError, RateLimited) as exc:
            # A failed poll blames no task and stops nothing (a 429 only slows the polls):
            # the page's own polling and the look-up by id remain.
            logger.debug("no look at the task list: {}: {}", exc.name, exc.detail)
            backoff = getattr(exc, "resume_after", None) or MAX_POLL_SECONDS
            self._polls_resume_at = self.clock() + backoff
            return
        answered = self.clock()  # the next polls count from here: never back to back
        for tracked in self._waiting(task_ids):
            tracked.polled_at = answered
        self.take(tasks, now)

    def done(self, task_ids: list[str]) -> list[str]:
        """Which of these tasks need no more waiting: over, or past their deadline. A task
        the site has said nothing of for a while is asked for by its id first."""
        now = self.clock()
        done = []
        for task_id in task_ids:
            tracked = self._tracked[task_id]
            if now - tracked.updated_at > QUIET_SECONDS and tracked.error is None:
                self._refresh(task_id, tracked)
            if tracked.over or now >= tracked.deadline:
                done.append(task_id)
        return done

    def next_poll_at(self, task_ids: list[str]) -> float:
        """When one of these tasks next wants a poll of our own (a ``clock()`` time)."""
        expected = self.expected_duration()
        waiting = self._waiting(task_ids)
        due = min((poll_due(tracked, expected) for tracked in waiting), default=math.inf)
        return max(due, self._polls_resume_at)

    def expected_duration(self) -> float:
        """The quickest quarter of the last generations' durations; 0 before any was seen."""
        return sorted(self.recent)[len(self.recent) // 4] if self.recent else 0.0

    def outcome(self, task_id: str) -> Task:
        """Stop tracking a task that ``done`` returned: the task, finished, or its error."""
        tracked = self._tracked.pop(task_id)
        if tracked.error is not None:
            raise tracked.error
        if tracked.task is None or not tracked.task.finished:
            raise GenerationTimeout(
                f"task {task_id} still {tracked.status or 'unseen'} after {self.timeout:g}s"
            )
        return tracked.task

    def _add(self, task_id: str, tracked: Tracked) -> None:
        self._tracked[task_id] = tracked
        while len(self._tracked) > MAX_TRACKED:  # the oldest was abandoned long ago
            del self._tracked[next(iter(self._tracked))]

    def _waiting(self, task_ids: list[str]) -> list[Tracked]:
        """The tracked tasks among these that are not known to be over."""
        tracked = (self._tracked[task_id] for task_id in task_ids)
        return [t for t in tracked if not t.over]

    def _refresh(self, task_id: str, tracked: Tracked) -> None:
        """Ask for one task directly. An error about this task alone (unknown id, odd answer)
        is kept for its ``outcome``, so that it does not hold up the other tasks in flight."""
        try:
            asked_at = self.clock()
            self._update(tracked, self.source.task(task_id), asked_at)
        except BrowserFailed:
            raise  # the browser's failure, not this task's: the whole step fails
        except (PermanentError, TransientError) as exc:
            tracked.error = exc
            tracked.updated_at = self.clock()

    def _update(self, tracked: Tracked, task: Task, seen_at: float) -> None:
        """``seen_at``: when the site said it, as near as we know."""
        if task.status != tracked.status:
            logger.debug("{}: {} ({})", task.id, task.status, task.progress)
            if task.status == "succeeded":
                self.on_succeeded(task)
                if tracked.timed:
                    self.recent.append(seen_at - tracked.started)
        tracked.task, tracked.updated_at = task, self.clock()

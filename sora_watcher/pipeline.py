"""The prompts at hand, up to ``concurrency`` generations in flight.

A round of the daemon asks the pipeline, in this order, to send what fits, to poll the tasks
in flight, to collect those finished, and to publish in order. A failed step is sorted here
into its family (see errors): a permanent error fails its prompt; a transient one gives the
prompt a retry time (``Entry.retry_at``) with backoff, until it has had its tries; the
service's "too many at once" lowers the number in flight; a queue-stopping error is held,
so that the images already paid for are published before the queue pauses.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from loguru import logger

from sora_watcher.errors import (
    ConcurrencyLimited,
    GenerationError,
    PermanentError,
    QueueStopError,
    TransientError,
)
from sora_watcher.in_flight import InFlight
from sora_watcher.journal import Entry, Journal, PromptState
from sora_watcher.pauses import POLL_SECONDS
from sora_watcher.quota import DailyCount, OverDailyLimit
from sora_watcher.service import Board
from sora_watcher.steps import Steps

MAX_ACTIVE_INPUTS = 10  # inputs at hand at once (some may wait for a retry)
Clock = Callable[[], float]  # a monotonic clock, in seconds


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    delay: float
    backoff: float = 2.0
    max_delay: float = 600.0
    jitter: float = 0.2  # +/- 20 %, so that many daemons do not retry in step

    def wait_before(self, retry: int) -> float:
        base = min(self.delay * self.backoff ** (retry - 1), self.max_delay)
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)


class Pipeline:
    def __init__(
        self,
        steps: Steps,
        in_flight: InFlight,
        retry: RetryPolicy,
        board: Board,
        wait: Callable[[float], None],
        clock: Clock = time.monotonic,
    ) -> None:
        self.steps = steps
        self.in_flight = in_flight
        self.retry = retry
        self.board = board
        self.wait = wait  # waits alive (see pauses); raises Interrupted on a stop
        self.clock = clock
        self.today: DailyCount = steps.today
        self.follows_tasks = steps.capabilities.follows_tasks
        self.active: list[Journal] = []  # inputs in progress, in the order they came
        # A pause held until what is paid for is down and published (see paid_work_pending).
        self.held_stop: QueueStopError | None = None

    def add(self, journal: Journal) -> None:
        self.active.append(journal)

    def open_entries(self) -> Iterator[tuple[Journal, Entry]]:
        """The entries at hand, each journal's from its first unfinished one on: those before
        are done with, and skipping them keeps a round's cost from growing with the input."""
        for journal in self.active:
            for entry in journal.unfinished():
                yield journal, entry

    def is_due(self, entry: Entry) -> bool:
        """Whether ``entry`` is to be sent (or followed again, after a restart) now."""
        waiting = entry.state in (PromptState.PENDING, PromptState.SUBMITTING)
        resumed = entry.state is PromptState.SUBMITTED and not self.in_flight.holds(entry)
        return (waiting or resumed) and (entry.retry_at is None or entry.retry_at <= self.clock())

    def wants_input(self) -> bool:
        """Take the next input when there is room in flight and nothing else to send."""
        if not self.active:
            return True
        if len(self.active) >= MAX_ACTIVE_INPUTS:  # some wait for retries: enough at hand
            return False
        return self.in_flight.has_room() and not any(
            self.is_due(entry) for _, entry in self.open_entries()
        )

    def send_what_fits(self) -> None:
        """Send the entries that are due, in order, while there is room in flight.

        Raises ``DailyLimitReached`` when the next one would pass today's limit and nothing
        of ours is in flight: the queue pauses (with tasks in flight, they come first)."""
        for journal, entry in self.open_entries():
            if not self.in_flight.has_room() or self.held_stop is not None:
                return
            if not self.is_due(entry):
                continue
            if entry.state is not PromptState.SUBMITTED:
                variants = entry.job_options.variants
                if variants > self.today.limit > 0:  # would wait for a midnight that never comes
                    self.steps.fail(journal, entry, OverDailyLimit(variants, self.today.limit))
                    continue
                limit = self.today.reached(self.in_flight.images() + variants)
                if limit is not None:
                    if self.in_flight.is_empty():  # what is paid for comes first
                        raise limit
                    return
                where = f"{entry.index + 1}/{len(journal.entries)} of {journal.input_name}"
                self.board.set("generating", where)
                send = partial(self.steps.send, journal, entry, self.active)
                self.attempt(journal, entry, send)
            if entry.state is PromptState.SUBMITTED:
                self.in_flight.track(journal, entry)

    def poll(self) -> bool:
        """Ask the backend which tasks in flight finished; True if some did (they are now
        collectable). A queue-stopping error is raised: the caller pauses."""
        if not self.in_flight.running:
            return False
        try:
            done = self.steps.backend().finished(self.in_flight.task_ids(), POLL_SECONDS)
        except QueueStopError:
            raise
        except GenerationError as exc:  # the backend, not a task: every task is still there
            logger.warning("{} while following tasks ({}); trying again", exc.name, exc.detail)
            self.wait(self.retry.wait_before(1))
            return False
        return self.in_flight.mark_finished(set(done))

    def collect(self) -> None:
        """Download the images of every collectable task, in the order they were sent."""
        while (task := self.in_flight.next_collectable()) is not None:
            journal, entry = task
            if self.attempt(journal, entry, partial(self.steps.download, journal, entry)):
                self.in_flight.widen()

    def publish_in_order(self) -> Iterator[Journal]:
        """Images go to images/ in input order and prompt order, so the log keeps it too.

        Yields each journal whose prompts are all finished, as soon as they are: it has left
        the pipeline, and its input is finished before the next input's images go out."""
        for journal in list(self.active):
            for entry in journal.unfinished():
                if entry.state is PromptState.DOWNLOADED:
                    self.steps.publish(journal, entry)
                if not entry.finished:
                    return
            self.active.remove(journal)
            yield journal

    def attempt(self, journal: Journal, entry: Entry, step: Callable[[], None]) -> bool:
        """Run a step of a prompt, and sort what goes wrong into its three families; True
        if the step went through."""
        try:
            step()
        except PermanentError as exc:
            entry.retry_at = None
            self.steps.fail(journal, entry, exc)
        except ConcurrencyLimited as exc:
            self.too_many(entry, exc)
        except TransientError as exc:
            self.retry_later(journal, entry, exc)
        except QueueStopError as exc:  # a pause, once what is paid for is down
            self.held_stop = self.held_stop or exc
        else:
            entry.retry_at = None
            return True
        return False

    def too_many(self, entry: Entry, exc: ConcurrencyLimited) -> None:
        """The service's "too many at once": fewer in flight, and this one a bit later."""
        if exc.retry_after is None and self.in_flight.is_empty():
            self.held_stop = self.held_stop or exc  # another client's tasks fill the account
            return
        concurrency = self.in_flight.narrow()
        delay = self.retry.delay if exc.retry_after is None else exc.retry_after
        entry.retry_at = self.clock() + delay
        logger.warning("{}: {} in flight at most for now", exc.detail, concurrency)

    def retry_later(self, journal: Journal, entry: Entry, exc: TransientError) -> None:
        """Another try later, with backoff; the prompt fails once it has had its tries (the
        settings', or fewer if the error says so: see ``TransientError.max_retries``)."""
        entry.attempts += 1
        journal.save(entry)
        allowed = self.retry.max_retries
        if exc.max_retries is not None:
            allowed = min(allowed, exc.max_retries)
        if entry.attempts > allowed:
            entry.retry_at = None
            self.steps.fail(journal, entry, exc.given_up(entry.attempts))
            return
        delay = exc.retry_after or self.retry.wait_before(entry.attempts)
        entry.retry_at = self.clock() + delay
        logger.warning(
            "{} ({}): try {}/{} again in {:.0f}s",
            exc.name,
            exc.detail,
            entry.attempts + 1,
            allowed + 1,
            delay,
        )

    def until_next_retry(self) -> float | None:
        """Seconds to wait when all that is left waits for a retry time; None if there is
        something to do now, or nothing at all."""
        if not self.active or self.in_flight.running:
            return None
        entries = [entry for _, entry in self.open_entries()]
        if any(self.is_due(entry) for entry in entries):
            return None
        now = self.clock()
        later = [e.retry_at for e in entries if e.retry_at is not None and e.retry_at > now]
        return min(later) - now if later else None

    def paid_work_pending(self) -> bool:
        """Whether a pause now would lose what is already paid for: images finished and not
        yet down, and calls in flight that end with the backend (they would be paid again)."""
        return bool(self.in_flight.collectable) or (
            not self.follows_tasks and bool(self.in_flight.running)
        )

    def close(self) -> None:
        """Close the backend. The calls in flight of a backend that does not follow tasks end
        with it: their prompts go back to pending, to be sent again."""
        if not self.follows_tasks:
            for journal, entry in self.in_flight.drop_all():
                journal.forget_task(entry)
        self.steps.close()

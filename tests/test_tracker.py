"""The tasks in flight (``sora_driver.tracker``): deadlines, the poll schedule, updates.

Pure: a fake clock that moves only when told, a fake site; no browser, no sleep.
"""

from __future__ import annotations

import pytest

from sora_driver.errors import PageError, SessionExpired
from sora_driver.sora_api import BrowserFailed, Picture, Task, tasks_in
from sora_driver.tracker import (
    MAX_POLL_SECONDS,
    MAX_TRACKED,
    QUIET_SECONDS,
    TaskTracker,
    Tracked,
    poll_due,
)
from sora_watcher.errors import (
    GenerationError,
    GenerationTimeout,
    Overloaded,
    RateLimited,
    TaskFailed,
)

TIMEOUT = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Site:
    """Answers the tracker's questions from ``tasks`` (or raises ``error``), and counts them."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.error: GenerationError | None = None
        self.lists = 0
        self.asked: list[str] = []

    def task_list(self) -> list[Task]:
        self.lists += 1
        if self.error is not None:
            raise self.error
        return list(self.tasks.values())

    def task(self, task_id: str) -> Task:
        self.asked.append(task_id)
        if self.error is not None:
            raise self.error
        return self.tasks.get(task_id, Task(task_id, "running"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def site() -> Site:
    return Site()


@pytest.fixture
def succeeded() -> list[str]:
    return []


@pytest.fixture
def tracker(site: Site, clock: Clock, succeeded: list[str]) -> TaskTracker:
    return TaskTracker(site, TIMEOUT, on_succeeded=lambda t: succeeded.append(t.id), clock=clock)


def learn_durations(tracker: TaskTracker, clock: Clock, durations: list[float]) -> None:
    """Generations seen from their submission to their end, one after the other."""
    for number, seconds in enumerate(durations):
        task_id = f"past_{number}"
        tracker.submitted(task_id)
        clock.now += seconds
        tracker.take([Task(task_id, "succeeded")], clock())
        tracker.outcome(task_id)


# -- the poll schedule ------------------------------------------------------------------------


def test_a_task_is_polled_just_before_its_expected_end_then_often_then_every_5_percent() -> None:
    tracked = Tracked(started=100.0, deadline=200.0, updated_at=100.0)
    assert poll_due(tracked, expected=2.0) == pytest.approx(101.95)
    tracked.polled_at = 101.5  # a poll for another task: this one is not due yet
    assert poll_due(tracked, expected=2.0) == pytest.approx(101.95)
    tracked.polled_at = 101.95  # not ended yet: its end is near
    assert poll_due(tracked, expected=2.0) == pytest.approx(101.975)
    tracked.polled_at = 102.1
    assert poll_due(tracked, expected=2.0) == pytest.approx(102.125)
    tracked.polled_at = 102.2  # 0.15 s on: back to 5 % of its age
    assert poll_due(tracked, expected=2.0) == pytest.approx(102.31)
    tracked.polled_at = 120.0
    assert poll_due(tracked, expected=2.0) == pytest.approx(121.0)
    tracked.polled_at = 100.5  # before any generation was seen: 5 % of its age, 0.1 s at least
    assert poll_due(tracked, expected=0.0) == pytest.approx(100.6)


def test_a_poll_sees_a_finished_task_and_learns_its_duration(
    tracker: TaskTracker, clock: Clock, site: Site, succeeded: list[str]
) -> None:
    tracker.submitted("task_1")
    clock.now += 2.0
    site.tasks["task_1"] = Task("task_1", "succeeded")
    tracker.poll_if_due(["task_1"])
    assert site.lists == 1
    assert tracker.done(["task_1"]) == ["task_1"]
    assert succeeded == ["task_1"]  # its downloads may start
    assert tracker.expected_duration() == pytest.approx(2.0)
    assert tracker.outcome("task_1").status == "succeeded"


def test_no_poll_before_the_quickest_quarter_of_generations_would_end(
    tracker: TaskTracker, clock: Clock, site: Site
) -> None:
    learn_durations(tracker, clock, [12.0, 9.0, 30.0, 10.0, 13.0, 11.0])
    assert tracker.expected_duration() == 10.0
    tracker.submitted("task_1")
    clock.now += 2.0
    tracker.poll_if_due(["task_1"])
    assert site.lists == 0
    assert tracker.next_poll_at(["task_1"]) == pytest.approx(clock() + 7.95)
    clock.now = tracker.next_poll_at(["task_1"])
    tracker.poll_if_due(["task_1"])
    assert site.lists == 1


def test_one_poll_covers_every_task_and_the_next_ones_count_from_its_answer(
    tracker: TaskTracker, clock: Clock, site: Site
) -> None:
    tracker.submitted("task_1")
    tracker.submitted("task_2")
    clock.now += 1.0
    tracker.poll_if_due(["task_1", "task_2"])
    assert site.lists == 1
    # 5 % of one second is less than the least gap between two polls
    assert tracker.next_poll_at(["task_1", "task_2"]) == pytest.approx(clock() + 0.1)
    tracker.poll_if_due(["task_1", "task_2"])
    assert site.lists == 1


@pytest.mark.parametrize(
    ("error", "backoff"),
    [
        (RateLimited("429 on the task list", resume_after=30.0), 30.0),
        (PageError("browser: net::ERR_CONNECTION_RESET"), MAX_POLL_SECONDS),
        (PageError("unexpected answer: /backend/v2/list_tasks: not JSON"), MAX_POLL_SECONDS),
        (Overloaded("503 heavy_load"), MAX_POLL_SECONDS),
        (TaskFailed("404 on the task list"), MAX_POLL_SECONDS),
    ],
)
def test_a_failed_poll_stops_nothing_and_slows_the_polls(
    tracker: TaskTracker, clock: Clock, site: Site, error: GenerationError, backoff: float
) -> None:
    tracker.submitted("task_1")
    clock.now += 2.0
    site.error = error
    tracker.poll_if_due(["task_1"])  # no exception: the queue goes on
    assert site.lists == 1
    assert tracker.done(["task_1"]) == []  # no task is blamed
    assert tracker.next_poll_at(["task_1"]) == pytest.approx(clock() + backoff)
    tracker.poll_if_due(["task_1"])
    assert site.lists == 1, "not asked again before the backoff"
    clock.now += backoff
    tracker.poll_if_due(["task_1"])
    assert site.lists == 2


def test_a_session_gone_while_polling_stops_the_queue(
    tracker: TaskTracker, clock: Clock, site: Site
) -> None:
    tracker.submitted("task_1")
    clock.now += 2.0
    site.error = SessionExpired("null session")
    with pytest.raises(SessionExpired):
        tracker.poll_if_due(["task_1"])


# -- deadlines --------------------------------------------------------------------------------


def test_a_task_past_its_deadline_is_done_and_times_out(tracker: TaskTracker, clock: Clock) -> None:
    tracker.submitted("task_1")
    started = clock()
    clock.now = started + TIMEOUT - 0.1
    tracker.take([Task("task_1", "running")], clock())
    assert tracker.done(["task_1"]) == []
    clock.now = started + TIMEOUT
    assert tracker.done(["task_1"]) == ["task_1"]
    with pytest.raises(GenerationTimeout, match="task task_1 still running after 60s"):
        tracker.outcome("task_1")


def test_tracking_again_after_a_failed_step_does_not_restart_the_deadline(
    tracker: TaskTracker, clock: Clock, site: Site
) -> None:
    # A failed step reloads the page and the daemon asks for the same tasks again: their
    # deadlines run from their submission all the same.
    tracker.submitted("task_1")
    clock.now += 50.0
    tracker.take([Task("task_1", "running")], clock())
    tracker.track(["task_1"])  # the next call after the reload
    assert site.asked == [], "a task we submitted is not asked for by id"
    clock.now += 10.0
    tracker.take([Task("task_1", "running")], clock())
    assert tracker.done(["task_1"]) == ["task_1"]
    with pytest.raises(GenerationTimeout):
        tracker.outcome("task_1")


def test_a_task_submitted_before_a_restart_is_asked_for_at_once_and_teaches_no_duration(
    tracker: TaskTracker, clock: Clock, site: Site
) -> None:
    tracker.track(["task_old"])
    assert site.asked == ["task_old"]
    clock.now += 3.0
    tracker.take([Task("task_old", "succeeded")], clock())
    assert tracker.done(["task_old"]) == ["task_old"]
    assert tracker.expected_duration() == 0.0


# -- updates ----------------------------------------------------------------------------------


def test_a_quiet_task_is_asked_for_by_id_and_its_error_is_its_own(
    tracker: TaskTracker, clock: Clock, site: Site
) -> None:
    tracker.submitted("task_1")
    tracker.submitted("task_2")
    clock.now += QUIET_SECONDS + 0.1
    tracker.take([Task("task_2", "running")], clock())
    site.error = TaskFailed("HTTP 404 on /backend/video_gen/task_1: not found")
    assert tracker.done(["task_1", "task_2"]) == ["task_1"]
    assert site.asked == ["task_1"]
    with pytest.raises(TaskFailed, match="404"):
        tracker.outcome("task_1")
    assert tracker.done(["task_2"]) == []  # the other task is still waited for


def test_a_browser_failure_while_asking_for_a_task_fails_the_step_not_the_task(
    tracker: TaskTracker, clock: Clock, site: Site
) -> None:
    tracker.submitted("task_1")
    clock.now += QUIET_SECONDS + 0.1
    site.error = BrowserFailed("browser: net::ERR_CONNECTION_RESET")
    with pytest.raises(BrowserFailed):
        tracker.done(["task_1"])
    site.error = None  # the browser is back: the task is still waited for, not failed
    assert tracker.done(["task_1"]) == []
    site.tasks["task_1"] = Task("task_1", "succeeded")
    clock.now += QUIET_SECONDS + 0.1
    assert tracker.done(["task_1"]) == ["task_1"]
    assert tracker.outcome("task_1").status == "succeeded"


def test_updates_of_tasks_not_ours_are_ignored_and_success_is_told_once(
    tracker: TaskTracker, clock: Clock, succeeded: list[str]
) -> None:
    tracker.submitted("task_1")
    clock.now += 1.0
    done = Task("task_1", "succeeded")
    tracker.take([Task("someone_else", "succeeded"), done], clock())
    tracker.take([done], clock())  # seen again, by the page's polling
    assert succeeded == ["task_1"]
    assert tracker.outcome("task_1") == done


def test_tasks_never_collected_do_not_pile_up(tracker: TaskTracker) -> None:
    for number in range(MAX_TRACKED + 5):
        tracker.submitted(f"task_{number}")
    with pytest.raises(KeyError):
        tracker.outcome("task_0")  # the oldest, long abandoned
    tracker.submitted("task_new")
    assert tracker.done([f"task_{MAX_TRACKED + 4}", "task_new"]) == []


def test_an_odd_task_in_the_list_reads_as_absent_parts_never_as_an_error() -> None:
    origin = "https://sora.example"
    body = {
        "task_responses": [
            {"status": "running"},  # no id: not a task we could follow
            {"id": "t1", "status": "succeeded", "generations": [{"url": "http://[bad/x.png"}]},
            {"id": "t2", "status": "succeeded", "generations": [{"url": "/g/2.png"}]},
        ]
    }
    first, second = tasks_in(body, origin)
    assert (first.id, first.generations) == ("t1", (Picture(None),))
    assert second.generations[0].url == "https://sora.example/g/2.png"

"""The task tracker and the pipeline, without a browser and without sleeping: a scripted
backend whose tasks finish when the test says, and a clock that moves when the test says."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from sora_watcher.backends.base import Capabilities, Generation, ImageBackend, ImageFile, JobOptions
from sora_watcher.config import resolve
from sora_watcher.daemon import Daemon, RunMode
from sora_watcher.errors import (
    ConcurrencyLimited,
    CredentialsRefused,
    DailyLimitReached,
    GenerationError,
    GenerationTimeout,
    Interrupted,
    Overloaded,
    Resume,
    Unreachable,
)
from sora_watcher.in_flight import InFlight
from sora_watcher.inputs import Prompt
from sora_watcher.journal import Journal, PromptState
from sora_watcher.pauses import Pauses
from sora_watcher.pipeline import Pipeline, RetryPolicy
from sora_watcher.quota import DailyCount
from sora_watcher.service import STATUS_FILE, Board, Heartbeat
from sora_watcher.steps import Steps

DELAY = 10.0  # the retry delay: the first retry waits this long, the next twice as long


def tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, format="PNG")
    return out.getvalue()


class FakeBackend:
    """An ImageBackend whose tasks finish when the test adds their id to ``done``."""

    def __init__(self, errors: dict[str, list[GenerationError]] | None = None) -> None:
        self.errors = errors or {}  # by prompt: raised by its next submissions, in turn
        self.poll_errors: list[GenerationError] = []  # raised by the next calls to finished()
        self.done: set[str] = set()
        self.events: list[str] = []  # submits, collects and closes, in order
        self.prompts: dict[str, str] = {}  # task id -> prompt

    def submit(self, prompt: str, options: JobOptions) -> str:
        self.events.append(f"submit {prompt}")
        if self.errors.get(prompt):
            raise self.errors[prompt].pop(0)
        task_id = f"t{len(self.prompts) + 1}"
        self.prompts[task_id] = prompt
        return task_id

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        if self.poll_errors:
            raise self.poll_errors.pop(0)
        return [task_id for task_id in task_ids if task_id in self.done]

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        self.events.append(f"collect {self.prompts[task_id]}")
        images = [ImageFile(tiny_png(), 1, 1, "http://x/full.png", "PNG")] * options.variants
        return Generation(task_id, images)

    def find_task(self, prompt: str, since: float) -> str | None:
        return None

    def close(self) -> None:
        self.events.append("close")


class FakeClock:
    """A monotonic clock that moves only when something waits on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def capabilities(in_flight: int, follows_tasks: bool = True) -> Capabilities:
    return Capabilities(
        aspect_ratios=("1:1",),
        variants=(1, 2),
        default_in_flight=in_flight,
        max_in_flight=in_flight,
        follows_tasks=follows_tasks,
    )


def make_pipeline(
    tmp_path: Path,
    backend: ImageBackend,
    in_flight: int = 2,
    follows_tasks: bool = True,
    daily_limit: int = 0,
) -> tuple[Pipeline, FakeClock]:
    settings = resolve({"home": str(tmp_path)}, {})
    board = Board(tmp_path / STATUS_FILE)
    today = DailyCount(settings.images, daily_limit)
    steps = Steps(settings, lambda: backend, capabilities(in_flight, follows_tasks), board, today)
    clock = FakeClock()
    retry = RetryPolicy(max_retries=2, delay=DELAY, jitter=0.0)
    return Pipeline(steps, InFlight(in_flight), retry, board, clock.wait, clock), clock


def add_input(pipeline: Pipeline, tmp_path: Path, *texts: str, variants: int = 1) -> Journal:
    folder = tmp_path / "work"
    folder.mkdir(exist_ok=True)
    prompts = [Prompt(text, n, JobOptions(variants=variants)) for n, text in enumerate(texts, 1)]
    journal = Journal.start(folder / f"{texts[0]}.txt", prompts)
    pipeline.add(journal)
    return journal


def states(journal: Journal) -> list[str]:
    return [entry.state.value for entry in journal.entries]


# -- what is in flight ------------------------------------------------------------------------


def test_the_tracker_frees_a_slot_when_a_task_finishes(tmp_path: Path) -> None:
    pipeline, _ = make_pipeline(tmp_path, FakeBackend())
    journal = add_input(pipeline, tmp_path, "a", "b", variants=2)
    a, b = journal.entries
    a.task_id, b.task_id = "t1", "t2"
    tracker = InFlight(2)
    tracker.track(journal, a)
    tracker.track(journal, b)
    assert not tracker.has_room() and tracker.images() == 4
    assert not tracker.mark_finished({"elsewhere"})
    assert tracker.mark_finished({"t1"})
    assert tracker.has_room() and tracker.holds(a) and tracker.images() == 4
    assert tracker.next_collectable() == (journal, a)
    assert not tracker.holds(a) and tracker.next_collectable() is None
    assert tracker.task_ids() == ["t2"] and not tracker.is_empty()


def test_the_services_limit_narrows_the_tracker_and_downloads_widen_it_again() -> None:
    tracker = InFlight(3)
    assert tracker.narrow() == 1, "at least one in flight"
    tracker.widen()
    tracker.widen()
    tracker.widen()
    assert tracker.concurrency == 3, "never more than the most allowed"


# -- the pipeline -----------------------------------------------------------------------------


def test_it_sends_what_fits_in_order(tmp_path: Path) -> None:
    backend = FakeBackend()
    pipeline, _ = make_pipeline(tmp_path, backend, in_flight=2)
    journal = add_input(pipeline, tmp_path, "a", "b", "c")
    pipeline.send_what_fits()
    assert backend.events == ["submit a", "submit b"]
    assert states(journal) == ["submitted", "submitted", "pending"]
    assert not pipeline.wants_input(), "full: no more input wanted"


def test_a_finished_task_frees_a_slot_before_its_image_is_downloaded(tmp_path: Path) -> None:
    backend = FakeBackend()
    pipeline, _ = make_pipeline(tmp_path, backend, in_flight=2)
    add_input(pipeline, tmp_path, "a", "b", "c")
    pipeline.send_what_fits()
    assert not pipeline.poll(), "nothing finished yet"
    backend.done.add("t1")
    assert pipeline.poll()
    pipeline.send_what_fits()
    pipeline.collect()
    assert backend.events == ["submit a", "submit b", "submit c", "collect a"]


def test_images_are_published_in_prompt_order(tmp_path: Path) -> None:
    backend = FakeBackend()
    pipeline, _ = make_pipeline(tmp_path, backend, in_flight=2)
    journal = add_input(pipeline, tmp_path, "a", "b")
    pipeline.send_what_fits()
    backend.done.add("t2")  # the second finishes first
    assert pipeline.poll()
    pipeline.collect()
    assert list(pipeline.publish_in_order()) == []
    assert states(journal) == ["submitted", "downloaded"], "b waits for a"
    backend.done.add("t1")
    assert pipeline.poll()
    pipeline.collect()
    assert list(pipeline.publish_in_order()) == [journal]
    assert states(journal) == ["done", "done"] and pipeline.active == []
    assert len(list((tmp_path / "images").glob("*.png"))) == 2
    assert not list(journal.folder.glob(".*.png")), "staged images removed once published"


def test_a_transient_error_gives_the_entry_its_retry_time(tmp_path: Path) -> None:
    backend = FakeBackend({"a": [Overloaded("busy")]})
    pipeline, clock = make_pipeline(tmp_path, backend)
    journal = add_input(pipeline, tmp_path, "a")
    entry = journal.entries[0]
    pipeline.send_what_fits()
    assert entry.retry_at == clock.now + DELAY and entry.attempts == 1
    assert not pipeline.is_due(entry)
    pipeline.send_what_fits()
    assert backend.events == ["submit a"], "not before its time"
    assert pipeline.until_next_retry() == DELAY
    clock.now += DELAY
    assert pipeline.is_due(entry) and pipeline.until_next_retry() is None
    pipeline.send_what_fits()
    assert entry.state is PromptState.SUBMITTED and entry.retry_at is None


def test_retries_back_off_then_give_up(tmp_path: Path) -> None:
    backend = FakeBackend({"a": [GenerationTimeout("slow")] * 3})
    pipeline, clock = make_pipeline(tmp_path, backend)
    journal = add_input(pipeline, tmp_path, "a")
    pipeline.send_what_fits()
    while (delay := pipeline.until_next_retry()) is not None:
        clock.wait(delay)
        pipeline.send_what_fits()
    entry = journal.entries[0]
    assert clock.waits == [DELAY, 2 * DELAY]
    assert entry.state is PromptState.FAILED and entry.attempts == 3
    assert entry.error is not None and "gave up after 3 tries" in entry.error["detail"]


def test_an_error_that_allows_fewer_retries_gives_up_sooner(tmp_path: Path) -> None:
    """An error's own ``max_retries`` (1 here) wins over the settings' (2), and counts the
    prompt's tries; another prompt's tries are its own."""
    backend = FakeBackend({p: [Overloaded("no room", max_retries=1)] * 2 for p in "ab"})
    pipeline, clock = make_pipeline(tmp_path, backend, in_flight=1)
    journal = add_input(pipeline, tmp_path, "a", "b")
    pipeline.send_what_fits()
    while (delay := pipeline.until_next_retry()) is not None:
        clock.wait(delay)
        pipeline.send_what_fits()
    assert backend.events == ["submit a", "submit b", "submit a", "submit b"]
    assert states(journal) == ["failed", "failed"]
    for entry in journal.entries:
        assert entry.attempts == 2 and entry.error is not None
        assert "gave up after 2 tries" in entry.error["detail"]


def test_the_services_too_many_lowers_the_number_in_flight(tmp_path: Path) -> None:
    backend = FakeBackend({"b": [ConcurrencyLimited("you already have 1 in progress")]})
    pipeline, clock = make_pipeline(tmp_path, backend, in_flight=3)
    journal = add_input(pipeline, tmp_path, "a", "b", "c")
    pipeline.send_what_fits()
    assert pipeline.in_flight.concurrency == 1 and pipeline.held_stop is None
    assert journal.entries[1].retry_at == clock.now + DELAY
    assert journal.entries[1].attempts == 0, "not a failed try"
    assert backend.events == ["submit a", "submit b"]


def test_too_many_with_nothing_of_ours_in_flight_is_a_held_pause(tmp_path: Path) -> None:
    error = ConcurrencyLimited("another client fills the account")
    backend = FakeBackend({"a": [error]})
    pipeline, _ = make_pipeline(tmp_path, backend, in_flight=2)
    add_input(pipeline, tmp_path, "a", "b")
    pipeline.send_what_fits()
    assert pipeline.held_stop is error
    assert backend.events == ["submit a"], "nothing more is sent while a pause is held"


def test_a_queue_stop_waits_for_the_calls_already_paid_for(tmp_path: Path) -> None:
    backend = FakeBackend({"b": [CredentialsRefused("key revoked")]})
    pipeline, _ = make_pipeline(tmp_path, backend, follows_tasks=False)
    journal = add_input(pipeline, tmp_path, "a", "b")
    pipeline.send_what_fits()
    assert isinstance(pipeline.held_stop, CredentialsRefused)
    assert pipeline.paid_work_pending(), "a's call ends with the backend: it comes first"
    backend.done.add("t1")
    assert pipeline.poll()
    assert pipeline.paid_work_pending()
    pipeline.collect()
    assert not pipeline.paid_work_pending()
    assert states(journal) == ["downloaded", "submitting"]


def test_the_daily_limit_pauses_only_once_nothing_is_in_flight(tmp_path: Path) -> None:
    backend = FakeBackend()
    pipeline, _ = make_pipeline(tmp_path, backend, daily_limit=1)
    add_input(pipeline, tmp_path, "a", "b")
    pipeline.send_what_fits()
    assert backend.events == ["submit a"], "b would pass the limit: a comes first"
    backend.done.add("t1")
    assert pipeline.poll()
    pipeline.collect()
    with pytest.raises(DailyLimitReached):
        pipeline.send_what_fits()


def test_an_entry_over_a_whole_days_limit_fails_at_once(tmp_path: Path) -> None:
    backend = FakeBackend()
    pipeline, _ = make_pipeline(tmp_path, backend, daily_limit=1)
    journal = add_input(pipeline, tmp_path, "a", variants=2)
    pipeline.send_what_fits()
    assert backend.events == []
    assert journal.entries[0].error == {
        "class": "OverDailyLimit",
        "detail": "variants 2 is over SORA_DAILY_LIMIT=1",
    }


def test_a_failing_poll_waits_and_keeps_every_task(tmp_path: Path) -> None:
    backend = FakeBackend()
    pipeline, clock = make_pipeline(tmp_path, backend)
    add_input(pipeline, tmp_path, "a")
    pipeline.send_what_fits()
    backend.poll_errors.append(Unreachable("the browser went away"))
    backend.done.add("t1")
    assert not pipeline.poll()
    assert clock.waits == [DELAY] and pipeline.in_flight.task_ids() == ["t1"]
    assert pipeline.poll(), "the next poll finds it"


def test_closing_sends_again_the_calls_that_end_with_the_backend(tmp_path: Path) -> None:
    backend = FakeBackend()
    pipeline, _ = make_pipeline(tmp_path, backend, follows_tasks=False)
    journal = add_input(pipeline, tmp_path, "a")
    pipeline.send_what_fits()
    pipeline.close()
    assert backend.events == ["submit a", "close"]
    assert journal.entries[0].state is PromptState.PENDING
    assert journal.entries[0].task_id is None and pipeline.in_flight.is_empty()
    reloaded = Journal.load(journal.path)
    assert reloaded.entries[0].state is PromptState.PENDING, "written down"


def test_a_retry_time_is_not_written_in_the_journal(tmp_path: Path) -> None:
    backend = FakeBackend({"a": [Overloaded("busy")]})
    pipeline, _ = make_pipeline(tmp_path, backend)
    journal = add_input(pipeline, tmp_path, "a")
    pipeline.send_what_fits()
    assert journal.entries[0].retry_at is not None
    assert "retry_at" not in journal.entries[0].to_dict()
    assert Journal.load(journal.path).entries[0].retry_at is None, "tried at once after a restart"


# -- pauses and run modes ---------------------------------------------------------------------


def test_a_stop_ends_a_wait_at_once() -> None:
    stop = threading.Event()
    stop.set()
    pauses = Pauses(stop, Heartbeat(60), pause_seconds=3600)
    with pytest.raises(Interrupted):
        pauses.wait(3600)


def test_a_file_already_changed_resumes_without_waiting(tmp_path: Path) -> None:
    session = tmp_path / "session.json"
    session.write_text("{}")
    pauses = Pauses(threading.Event(), Heartbeat(60), pause_seconds=3600)
    pauses.wait_to_resume(Resume(file=session, seen=(0, 0)))  # another version than seen


def test_only_run_waits_out_a_pause() -> None:
    assert [mode.waits for mode in RunMode] == [True, False, False]
    assert RunMode("once") is RunMode.ONCE


def test_generate_leaves_its_prompt_file_and_no_work_folder(tmp_path: Path) -> None:
    backend = FakeBackend()
    backend.done = AlwaysDone()
    settings = resolve({"home": str(tmp_path)}, {})
    source = tmp_path / "prompt.txt"
    source.write_text("a\n")
    daemon = Daemon(settings, lambda: backend, threading.Event(), capabilities(1), "generate")
    assert daemon.generate(source, [Prompt("a", 1)])
    assert source.exists() and len(list(settings.images.glob("*.png"))) == 1
    assert not daemon.workdir.exists()
    assert backend.events == ["submit a", "collect a", "close"]


class AlwaysDone(set[str]):
    def __contains__(self, item: object) -> bool:
        return True

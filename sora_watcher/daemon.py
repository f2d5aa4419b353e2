"""The worker: inputs claimed from the inbox, their prompts driven through the pipeline.

Shaped like huey's consumer: a short loop under ``while not stop.is_set()``; signal handlers
only set ``stop``, and a stop during a wait raises ``Interrupted`` (see pauses). The parts:

- lifecycle (here): the lock, the backend's start, the clean-up after a crash, the stop;
- one input's life (jobs): claim, read, journal, finish, failure report;
- the pipeline (pipeline, in_flight, steps): send what fits, poll, collect, publish in order,
  retries with backoff;
- pauses (pauses): waiting, alive, until a queue-stopping error's cause is gone.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Protocol

from loguru import logger

from sora_watcher import logs, metrics
from sora_watcher.alerts import Alerts
from sora_watcher.backends.base import Capabilities
from sora_watcher.config import Settings, concurrency_for, worker_folders
from sora_watcher.errors import CredentialsMissing, GenerationError, Interrupted, QueueStopError
from sora_watcher.folders import LOCK_FILE, JobState, hold_lock
from sora_watcher.in_flight import InFlight
from sora_watcher.inputs import Prompt, Rules
from sora_watcher.inputs.chart import load_template
from sora_watcher.job_view import describe
from sora_watcher.jobs import Jobs
from sora_watcher.journal import SUFFIX, Journal, PromptState
from sora_watcher.outbox import Outbox
from sora_watcher.pauses import POLL_SECONDS, Pauses
from sora_watcher.pipeline import Pipeline, RetryPolicy
from sora_watcher.quota import DailyCount
from sora_watcher.records import Record, Records
from sora_watcher.service import STATUS_FILE, Board, Heartbeat, notify
from sora_watcher.service_settings import ServiceSettings, read_settings
from sora_watcher.steps import BackendFactory, Steps
from sora_watcher.watch import Intake


class Beside(Protocol):
    """What runs along the worker (the HTTP service): started and closed by ``run``."""

    def start(self) -> None: ...

    def close(self) -> None: ...


class RunMode(str, Enum):
    RUN = "run"  # watch the inbox until stopped
    ONCE = "once"  # the inbox as it is, then exit
    GENERATE = "generate"  # one prompt file, outside the queue; the file stays where it is

    @property
    def waits(self) -> bool:
        """Whether missing credentials and pauses are waited out. Only a service has someone
        to fix their cause while it waits: a one-shot run stops instead."""
        return self is RunMode.RUN


class Daemon:
    def __init__(
        self,
        settings: Settings,
        make_backend: BackendFactory,
        stop: threading.Event,
        capabilities: Capabilities,
        mode: RunMode | str = RunMode.RUN,  # a RunMode, or its value: the command's name
        service: ServiceSettings | None = None,  # None: the defaults (webhooks, alerts off)
    ) -> None:
        self.settings = settings
        service = service or read_settings({}, {}, settings.home)
        self.capabilities = capabilities
        self.stop = stop
        self.mode = RunMode(mode)
        self.folders = worker_folders(settings)
        self.rules = Rules(
            settings.max_input_bytes,
            settings.max_prompt_chars,
            load_template(settings.prompt_template),  # a wrong one stops the start
            capabilities,
        )
        self.intake = Intake(
            self.folders.inbox, settings.settle_seconds, settings.rescan_seconds, settings.polling
        )
        # A generation may legitimately keep the worker busy this long between two steps.
        self.heartbeat = Heartbeat(settings.timeout + capabilities.busy_seconds)
        self.pauses = Pauses(stop, self.heartbeat, settings.pause_seconds)
        # `generate` keeps its journal, staged images and board out of the way of a daemon
        # that may run on the same folders (created by generate(), removed after).
        self.workdir = self.folders.processing
        if self.mode is RunMode.GENERATE:
            self.workdir = settings.processing / f"generate-{uuid.uuid4().hex[:12]}"
        self.board = Board(self.workdir / STATUS_FILE)
        moves_inputs = self.mode is not RunMode.GENERATE
        # Who asked is told of each job's end (webhooks); a person, of each pause (alerts).
        self.outbox = Outbox(settings.outbox, service)
        self.alerts = Alerts(service.notify, settings.worker_id)
        records = Records(settings.records) if moves_inputs else None
        self.jobs = Jobs(
            settings, self.folders, self.rules, capabilities, moves_inputs, records, self.ended
        )
        today = DailyCount(settings.images, settings.daily_limit)
        steps = Steps(settings, make_backend, capabilities, self.board, today)
        most = concurrency_for(settings, capabilities.max_in_flight, capabilities.default_in_flight)
        retry = RetryPolicy(settings.max_retries, settings.retry_delay)
        self.pipeline = Pipeline(steps, InFlight(most), retry, self.board, self.pauses.wait)
        # Since when the queue has been paused, until work shows it has really resumed: a
        # pause whose cause is still there pauses again at once, and must not be announced
        # as resumed every few minutes.
        self.paused_since: float | None = None
        self.next_prune = 0.0  # when old job records are removed next (monotonic)

    @property
    def unfinished(self) -> int:
        """Inputs that did not end in processed/ (``once`` exits non-zero if any)."""
        return self.jobs.unfinished

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self, beside: Sequence[Beside] = ()) -> None:
        """Work until ``stop`` is set (``once``: until the inbox is empty). ``beside``: what
        runs along (the HTTP service), started once the worker's lock is ours."""
        assert self.mode is not RunMode.GENERATE, "generate() runs that mode"
        self.folders.ensure()
        lock = hold_lock(self.folders.processing / LOCK_FILE)
        started: list[Beside] = []
        try:
            for service in beside:
                service.start()
                started.append(service)
            self.start_backend()
            clean_up_after_crash(self.folders.processing)
            self.prune_records()
            for path in self.folders.waiting(JobState.PROCESSING):
                logger.info("resuming {} left in processing/", path.name)
                self.intake.offer(path)
            self.intake.start(watch=self.mode is RunMode.RUN)
            self.outbox.start(self.stop)
            self.ready()
            self.board.set("idle")
            # Last: once the line is out, /readyz and `status` say the queue takes work.
            logger.info("watching {}", self.folders.inbox)
            while not self.stop.is_set():
                if not self.loop():
                    break  # `once`: the inbox is empty
        finally:
            self.heartbeat.stop()  # first: systemd gets no ping after STOPPING=1
            notify("STOPPING=1")
            self.intake.stop()
            self.pipeline.close()
            if self.mode is RunMode.ONCE and not self.stop.is_set():
                self.outbox.flush()
            self.outbox.close()
            self.alerts.close()
            for service in started:
                service.close()
            self.board.set("stopped")
            os.close(lock)
            logger.info("stopped")

    def start_backend(self) -> None:
        """Warm the backend up before taking work. Without credentials (session.json, an API
        key) nothing is claimed: ``once`` and ``generate`` stop; the daemon waits for them
        (systemd would only restart it into the same state)."""
        while True:
            try:
                self.pipeline.steps.backend()
                self.resumed()
                return
            except CredentialsMissing as exc:
                if not self.mode.waits:
                    raise
                logs.credentials_missing(exc.detail)
                self.ready()  # up, and saying why it waits
                self.board.set("paused", f"{exc.name}: {exc.detail}", exc.resume.hint or "")
                self.alerts.paused(exc.name, exc.detail, exc.resume.hint)
                self.paused_since = self.paused_since or time.time()
                self.pauses.wait_to_resume(exc.resume)
            except GenerationError as exc:
                logger.error(
                    "{} at start-up ({}); the first input tries again", exc.name, exc.detail
                )
                return

    def ready(self) -> None:
        """Tell systemd the service is up, and keep its watchdog fed from now on."""
        notify("READY=1")
        self.heartbeat.start()

    def generate(self, source: Path, prompts: list[Prompt]) -> bool:
        """Images for prompts outside the queue (the ``generate`` mode); True if all made.
        The prompt file stays where it is."""
        assert self.mode is RunMode.GENERATE, "run() runs the other modes"
        self.workdir.mkdir(parents=True)
        try:
            self.start_backend()
            journal = Journal.start(self.workdir / source.name, prompts)
            self.pipeline.add(journal)
            while self.pipeline.active:
                self.work()
        finally:
            self.pipeline.close()
            self.alerts.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
        return all(entry.state is PromptState.DONE for entry in journal.entries)

    # -- the loop -----------------------------------------------------------------------------

    def loop(self) -> bool:
        """One turn: take an input if one is wanted, else a round of work. False once a
        ``once`` run has nothing left."""
        self.heartbeat.progress()
        try:
            if self.pipeline.wants_input():
                ready = self.intake.get(0.0 if self.pipeline.active else POLL_SECONDS)
                if ready is not None:
                    self.open_input(ready)
                    return True
                if not self.pipeline.active:
                    if self.mode is RunMode.ONCE and self.intake.idle():
                        return False
                    self.board.set("idle")
                    self.resumed()  # nothing left to try: nothing says the cause is back
                    if time.monotonic() >= self.next_prune:
                        self.prune_records()
                    return True
            self.work()
        except Interrupted:
            pass  # stopped during a wait: the loop sees the flag
        return True

    def work(self) -> None:
        """One round: send what fits, collect what finished, publish in order."""
        pipeline = self.pipeline
        try:
            pipeline.send_what_fits()
            if pipeline.poll():
                if self.capabilities.follows_tasks:
                    # A finished task no longer counts against the site's limit: the next
                    # prompt goes out first (from the next input, if this one has no more),
                    # so that its generation runs while this one's image comes down. A
                    # finished call's result is already here, and may be a "too many": it
                    # is looked at before anything more is sent (the next round sends).
                    self.take_waiting_inputs()
                    pipeline.send_what_fits()
                pipeline.collect()
        except QueueStopError as exc:
            self.pause(exc)
        for journal in pipeline.publish_in_order():
            self.jobs.finish(journal)
            if not pipeline.active:
                self.board.set("idle")
        success = self.board.last_success
        if success is not None and success["time"] >= (self.paused_since or float("inf")):
            self.resumed()
        if pipeline.held_stop is not None and not pipeline.paid_work_pending():
            self.pause(pipeline.held_stop)  # the images already paid for are in images/ first
        delay = pipeline.until_next_retry()
        if delay is not None:  # everything left waits for a retry time
            self.pauses.wait(delay)

    def take_waiting_inputs(self) -> None:
        """Open the inputs already waiting in the queue, as long as they are wanted."""
        while self.pipeline.wants_input() and (ready := self.intake.get(0.0)) is not None:
            self.open_input(ready)

    def open_input(self, path: Path) -> None:
        journal = self.jobs.open(path)
        if journal is not None:
            self.pipeline.add(journal)

    def prune_records(self) -> None:
        """Old records go, once a day, when the daemon has nothing else to do."""
        self.next_prune = time.monotonic() + 86400
        if self.jobs.records is not None:
            removed = self.jobs.records.prune(self.settings.records_days)
            if removed:
                logger.info("{} job record(s) over SORA_RECORDS_DAYS removed", removed)

    def resumed(self) -> None:
        """Work went on after a pause: say so, once."""
        if self.paused_since is not None:
            self.paused_since = None
            self.alerts.resumed()

    def ended(self, record: Record) -> None:
        """A job ended: its webhooks are on disk before its input moves (see Jobs)."""
        self.outbox.announce(record, describe(record, self.settings.images))
        metrics.job_ended(record.state.value)

    def pause(self, error: QueueStopError) -> None:
        """Stop taking work until the cause is gone; no input is blamed for it."""
        self.pipeline.held_stop = None  # this is the pause it held, if it held one
        logger.error("queue paused: {} ({})", error.name, error.detail)
        if error.resume.hint:
            logger.error("{}", error.resume.hint)
        self.board.set("paused", f"{error.name}: {error.detail}", error.resume.hint or "")
        self.alerts.paused(error.name, error.detail, error.resume.hint)
        self.pipeline.close()
        if not self.mode.waits:  # nobody will fix it while we wait: stop, the input stays
            self.jobs.unfinished += 1
            self.stop.set()
            raise Interrupted()
        self.paused_since = self.paused_since or time.time()
        self.pauses.wait_to_resume(error.resume)
        logger.info("queue resumed")


def clean_up_after_crash(processing: Path) -> None:
    """What a crash can leave in this worker's folder, and no journal will claim.

    A journal whose input is gone (the crash came between the move and the clean-up), and
    staged images or temporary files that no journal refers to.
    """
    referenced: set[str] = set()
    for journal_path in processing.glob("*" + SUFFIX):
        claimed = journal_path.with_name(journal_path.name.removesuffix(SUFFIX))
        if not os.path.lexists(claimed):
            logger.info("cleaning up the journal of {}, already moved", claimed.name)
            journal_path.unlink()
            continue
        try:
            journal = Journal.load(journal_path)
        except (ValueError, KeyError, TypeError):
            continue  # Jobs.resume() says so when it gets to this input
        referenced |= {staged.file for entry in journal.entries for staged in entry.staged}
    for leftover in processing.glob(".*"):
        if leftover.name not in {LOCK_FILE, STATUS_FILE, *referenced}:
            leftover.unlink(missing_ok=True)

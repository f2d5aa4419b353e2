"""The worker: one input at a time, each prompt driven through its journal to an image.

Shaped like huey's consumer: a short loop under ``while not stop.is_set()``; signal handlers
only set ``stop``; a retry is a counter with a delay and a backoff, kept in the journal.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import chain
from pathlib import Path

from loguru import logger

from sora_watcher import logs, pngmeta
from sora_watcher.backends.base import Capabilities, Generation, ImageBackend
from sora_watcher.config import Settings, concurrency_for
from sora_watcher.errors import (
    ConcurrencyLimited,
    CredentialsMissing,
    DownloadFailed,
    GenerationError,
    Interrupted,
    PermanentError,
    QueueStopError,
    Resume,
    TransientError,
    Unreachable,
)
from sora_watcher.folders import (
    Folders,
    JobState,
    fingerprint,
    hold_lock,
    publish_image,
    stage_image,
    write_atomically,
)
from sora_watcher.hooks import Hook
from sora_watcher.inputs import InputError, Prompt, Rules, read_prompts, theme_user
from sora_watcher.journal import SUFFIX, Entry, Journal, PromptState, Staged
from sora_watcher.quota import DailyCount, OverDailyLimit
from sora_watcher.service import STATUS_FILE, Board, Heartbeat, notify
from sora_watcher.watch import Intake

BackendFactory = Callable[[], ImageBackend]
QUEUE_POLL_SECONDS = 0.5  # how often an idle worker looks at the stop flag
FILE_CHECK_SECONDS = 2.0  # how often a paused queue looks at the file it waits for
MAX_ACTIVE_INPUTS = 10  # inputs at hand at once (some may wait for a retry)


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


def relative(path: Path, home: Path) -> str:
    try:
        return str(path.relative_to(home))
    except ValueError:
        return str(path)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        make_backend: BackendFactory,
        stop: threading.Event,
        capabilities: Capabilities,
        once: bool = False,
    ) -> None:
        self.settings = settings
        self.capabilities = capabilities
        self.folders = Folders.from_settings(settings)
        self.make_backend = make_backend
        self.stop = stop
        self.once = once  # exit when the inbox is empty, and on what would pause the queue
        self.retry = RetryPolicy(settings.max_retries, settings.retry_delay)
        self.rules = Rules(
            settings.max_input_bytes,
            settings.max_prompt_chars,
            settings.prompt_template,
            capabilities,
        )
        self.intake = Intake(
            self.folders.inbox, settings.settle_seconds, settings.rescan_seconds, settings.polling
        )
        self.backend: ImageBackend | None = None
        self.unfinished = 0  # inputs that did not end in processed/ (for `once`)
        self.board = Board(self.folders.processing / STATUS_FILE)
        # A generation may legitimately keep the worker busy this long between two steps.
        self.heartbeat = Heartbeat(settings.timeout + 3 * settings.page_timeout)
        self.on_success = Hook(settings.on_success, settings.hook_timeout)
        self.on_failure = Hook(settings.on_failure, settings.hook_timeout)
        self.active: list[Journal] = []  # inputs in progress, in the order they came
        self.in_flight: list[tuple[Journal, Entry]] = []  # submitted, not finished yet
        self.landed: list[tuple[Journal, Entry]] = []  # finished on the site, not downloaded
        # A pause held until what is paid for is down and published (see work()).
        self.held_stop: QueueStopError | None = None
        self.max_in_flight = concurrency_for(
            settings, capabilities.max_in_flight, capabilities.default_in_flight
        )
        self.concurrency = self.max_in_flight  # lowered for a while by the service's limit
        self.today = DailyCount(settings.images, settings.daily_limit)
        self.retry_at: dict[int, float] = {}  # id(entry) -> when it may be tried again
        self.moves_inputs = True  # False for `generate`, which leaves its prompt file be

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Work until ``stop`` is set (``once``: until the inbox is empty)."""
        self.folders.ensure()
        lock = hold_lock(self.folders.processing / ".lock")
        try:
            self.start_backend()
            self.clean_up_after_crash()
            for path in self.folders.waiting(JobState.PROCESSING):
                logger.info("resuming {} left in processing/", path.name)
                self.intake.offer(path)
            self.intake.start(watch=not self.once)
            logger.info("watching {}", self.folders.inbox)
            self.ready()
            self.board.set("idle")
            while not self.stop.is_set():
                self.heartbeat.progress()
                with contextlib.suppress(Interrupted):
                    if self.wants_input():
                        ready = self.intake.get(0.0 if self.active else QUEUE_POLL_SECONDS)
                        if ready is not None:
                            self.open_input(ready)
                            continue
                        if not self.active:
                            if self.once and self.intake.idle():
                                break
                            self.board.set("idle")
                            continue
                    self.work()
        finally:
            notify("STOPPING=1")
            self.heartbeat.stop()
            self.intake.stop()
            self.close_backend()
            self.board.set("stopped")
            os.close(lock)
            logger.info("stopped")

    def start_backend(self) -> None:
        """Warm the backend up before taking work. Without credentials (session.json, an API
        key) nothing is claimed: ``once`` and ``generate`` stop; the daemon waits for them
        (systemd would only restart it into the same state)."""
        while True:
            try:
                self.ensure_backend()
                return
            except CredentialsMissing as exc:
                if self.once:
                    raise
                logs.credentials_missing(exc.detail)
                self.ready()  # up, and saying why it waits
                self.board.set("paused", f"{exc.name}: {exc.detail}")
                self.wait_to_resume(exc.resume)
            except GenerationError as exc:
                logger.error(
                    "{} at start-up ({}); the first input tries again", exc.name, exc.detail
                )
                return

    def ready(self) -> None:
        """Tell systemd the service is up, and keep its watchdog fed from now on."""
        notify("READY=1")
        self.heartbeat.start()

    def close_backend(self) -> None:
        if not self.capabilities.follows_tasks:  # its calls in flight end with it
            for journal, entry in chain(self.in_flight, self.landed):
                self.forget_call(journal, entry)
            self.in_flight, self.landed = [], []
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception as exc:  # the process is ending; say it, do not crash on it
                logger.warning("closing the backend: {}", exc)
            self.backend = None

    def ensure_backend(self) -> ImageBackend:
        if self.backend is None:
            self.backend = self.make_backend()
        return self.backend

    # -- one input ----------------------------------------------------------------------------

    def open_input(self, path: Path) -> None:
        """Claim an input (or take one left in processing/) and add it to the work at hand."""
        try:
            self.read_input(path)
        except Exception as exc:  # whatever an input holds, it must not stop the daemon
            logger.exception("{}: unexpected error: {}", path.name, exc)
            claimed = self.folders.processing / path.name
            if os.path.lexists(claimed) and not Journal.path_for(claimed).exists():
                self.fail_unreadable(claimed, f"cannot read it: {type(exc).__name__}: {exc}")

    def read_input(self, path: Path) -> None:
        if path.parent == self.folders.processing:
            claimed: Path | None = path if os.path.lexists(path) else None
        else:
            claimed = self.folders.claim(path)
        if claimed is None:
            return  # already taken by another worker, or by an earlier event for the same file
        journal_path = Journal.path_for(claimed)
        if journal_path.exists():
            try:
                journal = Journal.load(journal_path)
            except (ValueError, KeyError, TypeError) as exc:
                self.fail_unreadable(
                    claimed,
                    f"its journal {journal_path.name} is damaged ({exc}); some of its images may "
                    "already be in images/: check before dropping it again",
                )
                journal_path.unlink()
                return
        else:
            logger.info("processing {}", claimed.name)
            try:
                prompts = read_prompts(claimed, self.rules, name=path.name)
            except (InputError, OSError) as exc:
                self.fail_unreadable(claimed, str(exc))
                return
            journal = Journal.start(claimed, prompts, name=path.name)
            for entry in journal.entries:
                if entry.error is not None:
                    logs.failure(entry.text, entry.error["class"], entry.error["detail"])
        if not self.capabilities.follows_tasks:
            self.send_again(journal)
        self.active.append(journal)

    def generate(self, source: Path, prompts: list[Prompt]) -> bool:
        """Images for prompts outside the queue (the ``generate`` command); True if all made.

        Its journal and staged images live in a folder of their own, out of the way of a
        daemon that may run on the same folders; the prompt file stays where it is.
        """
        self.settings.processing.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="generate-", dir=self.settings.processing))
        journal = Journal.start(workdir / source.name, prompts)
        self.moves_inputs = False
        self.board = Board(workdir / STATUS_FILE)  # a running daemon's board is not ours
        self.active = [journal]
        try:
            while self.active:
                self.work()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return all(entry.state is PromptState.DONE for entry in journal.entries)

    def fail_unreadable(self, claimed: Path, reason: str) -> None:
        final = self.folders.finish(claimed, JobState.FAILED, f"{claimed.name}: {reason}\n")
        logger.error("{} moved to {}: {}", claimed.name, final, reason)
        self.unfinished += 1

    def finish(self, journal: Journal) -> None:
        """Move the input to its last folder; the journal goes once the move is done."""
        claimed = journal.input_path
        failures = [e for e in journal.entries if e.state is PromptState.FAILED]
        if journal.outcome is None:
            journal.outcome = JobState.FAILED.value if failures else JobState.PROCESSED.value
            journal.reason = failure_report(journal) if failures else None
            journal.save()

        def remember(name: str) -> None:
            journal.final = name
            journal.save()

        state = JobState(journal.outcome)
        user = theme_user(journal.input_name)
        if user is not None and state is JobState.PROCESSED:
            self.write_result(user, journal.entries[0])
        if not self.moves_inputs:
            return
        final = self.folders.finish(claimed, state, journal.reason, journal.final, remember)
        journal.remove()
        if failures:
            self.unfinished += 1
            logger.error("{}: {} prompt(s) failed, moved to {}", claimed.name, len(failures), final)
        else:
            images = sum(len(e.images) for e in journal.entries)
            logger.info("{}: {} image(s), moved to {}", claimed.name, images, final)

    def write_result(self, user: str, entry: Entry) -> None:
        """``images/<user>/result_<user>.json``, replaced on each run, for the astrology app."""
        folder = self.images_folder(entry)
        result = {
            "user_id": user,
            "prompt": entry.text,
            "image": str(folder / entry.images[-1]),
        }
        path = folder / f"result_{user}.json"
        write_atomically(path, json.dumps(result, ensure_ascii=False, indent=2).encode("utf-8"))
        logger.info("{}: result written to {}", user, relative(path, self.settings.home))

    def images_folder(self, entry: Entry) -> Path:
        return self.settings.images / entry.folder if entry.folder else self.settings.images

    def clean_up_after_crash(self) -> None:
        """What a crash can leave in this worker's folder, and no journal will claim.

        A journal whose input is gone (the crash came between the move and the clean-up), and
        staged images or temporary files that no journal refers to.
        """
        referenced: set[str] = set()
        for journal_path in self.folders.processing.glob("*" + SUFFIX):
            claimed = journal_path.with_name(journal_path.name.removesuffix(SUFFIX))
            if not os.path.lexists(claimed):
                logger.info("cleaning up the journal of {}, already moved", claimed.name)
                journal_path.unlink()
                continue
            try:
                journal = Journal.load(journal_path)
            except (ValueError, KeyError, TypeError):
                continue  # handle() says so when it gets to this input
            referenced |= {staged.file for entry in journal.entries for staged in entry.staged}
        for leftover in self.folders.processing.glob(".*"):
            if leftover.name not in {".lock", STATUS_FILE, *referenced}:
                leftover.unlink(missing_ok=True)

    # -- the pipeline: up to `concurrency` generations in flight ------------------------------

    def wants_input(self) -> bool:
        """Take the next input when there is room in flight and nothing else to send."""
        if not self.active:
            return True
        if len(self.active) >= MAX_ACTIVE_INPUTS:  # some wait for retries: enough at hand
            return False
        return len(self.in_flight) < self.concurrency and not any(
            self.sendable(entry) for _, entry in self.open_entries()
        )

    def take_waiting_inputs(self) -> None:
        """Open the inputs already waiting in the queue, as long as they are wanted."""
        while self.wants_input() and (ready := self.intake.get(0.0)) is not None:
            self.open_input(ready)

    def open_entries(self) -> Iterator[tuple[Journal, Entry]]:
        """The entries at hand, each journal's from its first unfinished one on: those before
        are done with, and skipping them keeps a round's cost from growing with the input."""
        for journal in self.active:
            for entry in journal.unfinished():
                yield journal, entry

    def sendable(self, entry: Entry) -> bool:
        waiting = entry.state in (PromptState.PENDING, PromptState.SUBMITTING)
        resumed = entry.state is PromptState.SUBMITTED and not self.flying(entry)
        return (waiting or resumed) and self.retry_at.get(id(entry), 0.0) <= time.monotonic()

    def flying(self, entry: Entry) -> bool:
        return any(flying is entry for _, flying in chain(self.in_flight, self.landed))

    def work(self) -> None:
        """One round: send what fits, collect what finished, publish in order."""
        self.send_what_fits()
        if self.in_flight:
            self.collect_what_finished()
        self.publish_in_order()
        if self.held_stop is not None and not self.paid_work_pending():
            self.pause(self.held_stop)  # the images already paid for are in images/ first
        if (
            self.active
            and not self.in_flight
            and not any(self.sendable(e) for _, e in self.open_entries())
        ):
            now = time.monotonic()
            later = [t for t in self.retry_at.values() if t > now]
            if later:  # everything left waits for a retry time
                self.wait(min(later) - now)

    def send_what_fits(self) -> None:
        for journal, entry in self.open_entries():
            if len(self.in_flight) >= self.concurrency or self.held_stop is not None:
                return
            if not self.sendable(entry):
                continue
            if entry.state is not PromptState.SUBMITTED:
                variants = entry.job_options.variants
                if variants > self.today.limit > 0:  # would wait for a midnight that never comes
                    self.fail_entry(journal, entry, OverDailyLimit(variants, self.today.limit))
                    continue
                limit = self.today.reached(self.images_in_flight() + variants)
                if limit is not None:
                    if not self.in_flight and not self.landed:  # what is paid for comes first
                        self.pause(limit)
                    return
                number = entry.index + 1
                where = f"{number}/{len(journal.entries)} of {journal.input_name}"
                self.board.set("generating", where)
                self.attempt(journal, entry, partial(self.send, journal, entry))
            if entry.state is PromptState.SUBMITTED:
                self.in_flight.append((journal, entry))

    def collect_what_finished(self) -> None:
        task_ids = [str(entry.task_id) for _, entry in self.in_flight]
        try:
            done = set(self.ensure_backend().finished(task_ids, QUEUE_POLL_SECONDS))
        except QueueStopError as exc:
            self.pause(exc)
            return
        except GenerationError as exc:  # the backend, not a task: every task is still there
            logger.warning("{} while following tasks ({}); trying again", exc.name, exc.detail)
            self.wait(self.retry.wait_before(1))
            return
        if not done:
            return
        self.landed = [(j, e) for j, e in self.in_flight if e.task_id in done]
        self.in_flight = [(j, e) for j, e in self.in_flight if e.task_id not in done]
        # A finished task no longer counts against the site's limit: the next prompt goes out
        # first (from the next input, if this one has no more), so that its generation runs
        # while this one's image comes down. What would stop the queue waits until the images
        # already paid for are down. A finished call's result is already here, and may be a
        # "too many": it is looked at before anything more is sent (the next round sends).
        if self.capabilities.follows_tasks:
            self.take_waiting_inputs()
            self.send_what_fits()
        while self.landed:
            journal, entry = self.landed.pop(0)
            self.attempt(journal, entry, partial(self.download, journal, entry))

    def publish_in_order(self) -> None:
        """Images go to images/ in input order and prompt order, so the log keeps it too."""
        for journal in list(self.active):
            for entry in journal.unfinished():
                if entry.state is PromptState.DOWNLOADED:
                    self.publish(journal, entry)
                    entry.state = PromptState.DONE
                    journal.save(entry)
                    for staged in entry.staged:
                        (journal.folder / staged.file).unlink(missing_ok=True)
                if not entry.finished:
                    return
            self.active.remove(journal)
            self.finish(journal)
            if not self.active:
                self.board.set("idle")

    def attempt(self, journal: Journal, entry: Entry, step: Callable[[], None]) -> None:
        """Run a step of a prompt, and sort what goes wrong into its three families."""
        try:
            step()
            self.retry_at.pop(id(entry), None)
        except PermanentError as exc:
            self.retry_at.pop(id(entry), None)
            self.fail_entry(journal, entry, exc)
        except ConcurrencyLimited as exc:
            if exc.retry_after is None and not self.in_flight and not self.landed:
                self.held_stop = self.held_stop or exc  # another client's tasks fill the account
                return
            self.concurrency = max(1, len(self.in_flight))  # a landed task may still count
            delay = self.retry.delay if exc.retry_after is None else exc.retry_after
            self.retry_at[id(entry)] = time.monotonic() + delay
            logger.warning("{}: {} in flight at most for now", exc.detail, self.concurrency)
        except TransientError as exc:
            entry.attempts += 1
            journal.save(entry)
            if entry.attempts > self.retry.max_retries:
                exc.detail += f"; gave up after {entry.attempts} tries"
                self.retry_at.pop(id(entry), None)
                self.fail_entry(journal, entry, exc)
                return
            delay = exc.retry_after or self.retry.wait_before(entry.attempts)
            self.retry_at[id(entry)] = time.monotonic() + delay
            logger.warning(
                "{} ({}): try {}/{} again in {:.0f}s",
                exc.name,
                exc.detail,
                entry.attempts + 1,
                self.retry.max_retries + 1,
                delay,
            )
        except QueueStopError as exc:  # a pause, once what is paid for is down (see work())
            self.held_stop = self.held_stop or exc

    def paid_work_pending(self) -> bool:
        """Whether a pause now would lose what is already paid for: images landed and not
        yet down, and calls in flight that end with the backend (they would be paid again)."""
        return bool(self.landed) or (not self.capabilities.follows_tasks and bool(self.in_flight))

    def fail_entry(self, journal: Journal, entry: Entry, error: GenerationError) -> None:
        entry.state = PromptState.FAILED
        entry.error = {"class": error.name, "detail": error.detail}
        journal.save(entry)
        logs.failure(entry.text, error.name, error.detail)
        self.board.failed(entry.text, f"{error.name}: {error.detail}")
        self.on_failure.run("", str(journal.input_path), entry.text, error=error.name)

    def send(self, journal: Journal, entry: Entry) -> None:
        """pending/submitting -> submitted. The journal says "submitting" before the click."""
        backend = self.ensure_backend()
        if entry.state is PromptState.SUBMITTING:
            # We may have crashed after Sora took the prompt: look before submitting again.
            try:
                found = backend.find_task(entry.text, entry.submitting_since or 0.0)
            except PermanentError as exc:  # only the look-up failed, not the prompt
                raise Unreachable(f"looking for a task submitted before: {exc.detail}") from None
            # every entry, finished ones too: a task already made into an image is not this one
            owned = {e.task_id for j in self.active for e in j.entries if e is not entry}
            entry.task_id = None if found in owned else found  # the same prompt on two lines
            if entry.task_id is not None:
                logger.info("{}: found {} submitted before", journal.input_name, entry.task_id)
                entry.state = PromptState.SUBMITTED
                journal.save(entry)
                return
        logger.info("{} line {}: generating", journal.input_name, entry.line)
        now = time.time()
        entry.started_at = entry.started_at or now
        entry.state, entry.submitting_since = PromptState.SUBMITTING, now
        journal.save(entry)
        entry.task_id = backend.submit(entry.text, entry.job_options)
        entry.state = PromptState.SUBMITTED
        journal.save(entry)

    def download(self, journal: Journal, entry: Entry) -> None:
        """submitted -> downloaded: the images are staged beside the journal."""
        assert entry.task_id is not None
        try:
            generation = self.ensure_backend().collect(entry.task_id, entry.job_options)
            entry.staged = self.stage(journal, entry, generation)
        except GenerationError:
            if not self.capabilities.follows_tasks:  # the call is over: the next try sends it
                self.forget_call(journal, entry)
            raise
        entry.state = PromptState.DOWNLOADED
        journal.save(entry)
        self.today.add(len(entry.staged))  # made, if not yet in images/
        if self.concurrency < self.max_in_flight:
            self.concurrency += 1  # the service took one back: try one more in flight again

    def stage(self, journal: Journal, entry: Entry, generation: Generation) -> list[Staged]:
        """The images beside the journal, each carrying its prompt and what its sidecar says
        (all but its own final name, given when it is published)."""
        staged = []
        arrived = time.time()
        started = entry.started_at or arrived
        for index, image in enumerate(generation.images):
            metadata = {
                "prompt": entry.text,
                "source": journal.input_name,
                "line": entry.line,
                "options": entry.options,
                "folder": entry.folder,
                "backend": self.settings.backend,
                **generation.details,
                "task_id": generation.task_id,
                "variant": index,
                "width": image.width,
                "height": image.height,
                "source_url": image.source_url,
                "source_format": image.source_format,
                "timings_s": generation.timings,
                "attempts": entry.attempts + 1,
                "started_at": datetime.fromtimestamp(started).isoformat(),
                "finished_at": datetime.fromtimestamp(arrived).isoformat(),
                "duration_s": round(arrived - started, 3),
            }
            try:
                png = pngmeta.tag(image.png, entry.text, pngmeta.settings_line(metadata), metadata)
            except ValueError as exc:  # the backend let through what is not a whole PNG
                raise DownloadFailed(f"{image.source_url}: {exc}") from None
            metadata["bytes"] = len(png)
            path = stage_image(journal.folder, png)
            staged.append(Staged(path.name, metadata))
        return staged

    def publish(self, journal: Journal, entry: Entry) -> None:
        finished = time.time()
        started = entry.started_at or finished
        entry.images = []
        for staged in entry.staged:

            def remember(name: str, staged: Staged = staged) -> None:
                staged.target = name
                journal.save(entry)

            path = publish_image(
                journal.folder / staged.file,
                self.images_folder(entry),
                entry.text,
                staged.metadata,
                staged.target,
                remember,
            )
            entry.images.append(path.name)
            shown = relative(path, self.settings.home)
            seconds = staged.metadata.get("duration_s", finished - started)  # as the sidecar says
            logs.success(entry.text, shown, float(seconds))
            self.board.succeeded(entry.text, shown)
            source = str(journal.input_path)
            self.on_success.run(str(path), source, entry.text, task_id=entry.task_id or "")

    # -- pauses -------------------------------------------------------------------------------

    def wait(self, seconds: float) -> None:
        """Wait, alive: the heartbeat goes on, a stop request ends the wait at once."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.heartbeat.progress()
            if self.stop.wait(min(remaining, 1.0)):
                raise Interrupted()

    def pause(self, error: QueueStopError) -> None:
        """Stop taking work until the cause is gone; no input is blamed for it."""
        self.held_stop = None  # this is the pause it held
        logger.error("queue paused: {} ({})", error.name, error.detail)
        if error.resume.hint:
            logger.error("{}", error.resume.hint)
        self.board.set("paused", f"{error.name}: {error.detail}")
        self.close_backend()
        if self.once:  # nobody will fix it while `once` waits: stop, the input stays claimed
            self.unfinished += 1
            self.stop.set()
            raise Interrupted()
        self.wait_to_resume(error.resume)
        logger.info("queue resumed")

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
            delay = self.settings.pause_seconds if resume.after is None else resume.after
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
            if self.stop.wait(QUEUE_POLL_SECONDS):
                raise Interrupted()
        return answer == [True]

    def send_again(self, journal: Journal) -> None:
        """Generations that were in flight when the last run ended are lost with it (a call
        has no task to look up later): they are sent again."""
        for entry in journal.unfinished():
            if entry.state in (PromptState.SUBMITTING, PromptState.SUBMITTED):
                logger.info("{} line {}: sent again", journal.input_name, entry.line)
                self.forget_call(journal, entry)

    def forget_call(self, journal: Journal, entry: Entry) -> None:
        """A call that ended without an image, or with the process: the next try sends it."""
        entry.state, entry.task_id = PromptState.PENDING, None
        journal.save(entry)

    def images_in_flight(self) -> int:
        return sum(e.job_options.variants for _, e in chain(self.in_flight, self.landed))


HINTS = {  # what to do, by the error's class; others: see failure_report
    "InputError": "fix this entry and drop the rest again in a new file.",
    "InvalidRequest": "the service refused an option of this entry: fix it and drop it again.",
    "ContentRejected": "the service refused this prompt: reword it.",
    "OverDailyLimit": "ask for fewer variants, or raise SORA_DAILY_LIMIT.",
}


def failure_report(journal: Journal) -> str:
    """The text of ``<name>.error.txt``: which lines failed, why, and what to do."""
    failed = [e for e in journal.entries if e.state is PromptState.FAILED]
    lines = [f"{journal.input_name}: {len(failed)} prompt(s) failed."]
    for entry in journal.entries:
        if entry.error is None:
            lines.append(f"line {entry.line}: done ({', '.join(entry.images)})")
            continue
        hint = HINTS.get(entry.error["class"]) or (
            "the backend did not manage it after several tries: drop the file again later."
            if entry.attempts > 0
            else "the service refused this prompt: reword it."
        )
        lines.append(
            f"line {entry.line}: {entry.error['class']}: {entry.error['detail']}\n"
            f"  prompt: {entry.text}\n  what to do: {hint}"
        )
    lines.append("Images of the lines marked done are kept in images/.")
    return "\n".join(lines) + "\n"

"""The worker: one input at a time, one image per prompt, every outcome logged.

Shaped like huey's consumer: a short loop under ``while not stop.is_set()``; signal handlers
only set ``stop``; a retry is a counter with a delay and a backoff.
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from loguru import logger

from sora_driver.backend import Generation, ImageBackend
from sora_driver.errors import (
    Interrupted,
    PermanentError,
    QueueStopError,
    SessionExpired,
    SessionMissing,
    SoraError,
    TransientError,
)
from sora_watcher import logs
from sora_watcher.config import Settings
from sora_watcher.folders import Folders, JobState, save_image
from sora_watcher.inputs import InputError, Prompt, read_prompts
from sora_watcher.watch import start_observer

BackendFactory = Callable[[], ImageBackend]
QUEUE_POLL_SECONDS = 0.5  # how often an idle worker looks at the stop flag
SESSION_CHECK_SECONDS = 2.0  # how often a paused queue looks for a new session.json


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


@dataclass
class Outcome:
    prompt: Prompt
    images: list[Path]
    error: SoraError | None = None


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
        once: bool = False,
    ) -> None:
        self.settings = settings
        self.folders = Folders.from_settings(settings)
        self.make_backend = make_backend
        self.stop = stop
        self.retry = RetryPolicy(settings.max_retries, settings.retry_delay)
        self.paths: queue.Queue[Path] = queue.Queue()
        self.backend: ImageBackend | None = None
        self.once = once  # exit when the inbox is empty, and on what would pause the queue
        self.unfinished = 0  # inputs that did not end in processed/ (for `once`)

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Work until ``stop`` is set (``once``: until the inbox is empty)."""
        self.folders.ensure()
        self.start_backend()
        observer = None if self.once else start_observer(self.folders.inbox, self.paths)
        try:
            for path in self.folders.waiting(JobState.PROCESSING):
                logger.info("resuming {} left in processing/", path.name)
                self.paths.put(path)
            for path in self.folders.waiting(JobState.INBOX):
                self.paths.put(path)
            logger.info("watching {}", self.folders.inbox)
            while not self.stop.is_set():
                try:
                    path = self.paths.get(timeout=QUEUE_POLL_SECONDS)
                except queue.Empty:
                    if self.once:
                        break
                    continue
                with contextlib.suppress(Interrupted):
                    self.handle(path)
        finally:
            if observer is not None:
                observer.stop()
            self.close_backend()
            logger.info("stopped")

    def start_backend(self) -> None:
        """Warm the browser up before taking work; a missing session stops everything here,
        before any input has been claimed."""
        try:
            self.backend = self.make_backend()
        except SessionMissing:
            raise
        except SoraError as exc:
            logger.error(
                "{} at start-up ({}); the first input will try again", exc.name, exc.detail
            )

    def close_backend(self) -> None:
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception as exc:  # the process is ending; say it, do not crash on it
                logger.warning("closing the browser: {}", exc)
            self.backend = None

    # -- one input ----------------------------------------------------------------------------

    def handle(self, path: Path) -> None:
        if path.parent == self.folders.processing:
            claimed: Path | None = path if path.exists() else None
        else:
            claimed = self.folders.claim(path)
        if claimed is None:
            return  # already taken by another worker, or by an earlier event for the same file
        logger.info("processing {}", claimed.name)
        try:
            prompts = read_prompts(claimed)
        except InputError as exc:
            self.fail_input(claimed, str(exc))
            return
        outcomes = [self.generate_one(claimed, prompt, len(prompts)) for prompt in prompts]
        failures = [o for o in outcomes if o.error is not None]
        if failures:
            self.fail_input(claimed, failure_report(claimed.name, outcomes))
        else:
            final = self.folders.finish(claimed, JobState.PROCESSED)
            logger.info("{}: {} image(s), moved to {}", claimed.name, len(outcomes), final)

    def fail_input(self, claimed: Path, reason: str) -> None:
        final = self.folders.finish(claimed, JobState.FAILED, reason)
        logger.error("{} moved to {}: {}", claimed.name, final, reason.splitlines()[0])
        self.unfinished += 1

    def generate_one(self, source: Path, prompt: Prompt, total: int) -> Outcome:
        logger.info("{} line {} ({} prompt(s)): generating", source.name, prompt.line, total)
        retry = 0
        while True:
            try:
                generation = self.ensure_backend().generate(prompt.text, prompt.options)
            except PermanentError as exc:
                logs.failure(prompt.text, exc.name, exc.detail)
                return Outcome(prompt, [], exc)
            except TransientError as exc:
                retry += 1
                if retry > self.retry.max_retries:
                    logs.failure(
                        prompt.text, exc.name, f"{exc.detail}; gave up after {retry} tries"
                    )
                    return Outcome(prompt, [], exc)
                delay = self.retry.wait_before(retry)
                logger.warning(
                    "{} ({}): try {}/{} again in {:.0f}s",
                    exc.name,
                    exc.detail,
                    retry + 1,
                    self.retry.max_retries + 1,
                    delay,
                )
                self.wait(delay)
                continue
            except QueueStopError as exc:
                self.pause(exc)
                continue
            return Outcome(prompt, save_generation(self.settings, source, prompt, generation))

    # -- the backend and pauses ---------------------------------------------------------------

    def ensure_backend(self) -> ImageBackend:
        if self.backend is None:
            self.backend = self.make_backend()
        return self.backend

    def wait(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Interrupted()

    def pause(self, error: QueueStopError) -> None:
        """Stop taking work until the cause is gone; no input is blamed for it."""
        logger.error("queue paused: {} ({})", error.name, error.detail)
        self.close_backend()
        if self.once:  # nobody will fix it while `once` waits: stop, the input stays claimed
            self.unfinished += 1
            self.stop.set()
            raise Interrupted()
        if isinstance(error, (SessionMissing, SessionExpired)):
            logger.error(
                "log in to Sora by hand and save a new {}; the queue resumes by itself",
                self.settings.session_file,
            )
            self.wait_for_new_session()
        else:
            delay = error.resume_after if error.resume_after is not None else 300.0
            logger.warning("resuming in {:.0f}s", delay)
            self.wait(delay)
        logger.info("queue resumed")

    def wait_for_new_session(self) -> None:
        session = self.settings.session_file

        def fingerprint() -> tuple[int, int] | None:
            with contextlib.suppress(FileNotFoundError):
                stat = session.stat()
                return (stat.st_mtime_ns, stat.st_ino)
            return None

        before = fingerprint()
        while (now := fingerprint()) is None or now == before:
            self.wait(SESSION_CHECK_SECONDS)


def save_generation(
    settings: Settings, source: Path, prompt: Prompt, generation: Generation
) -> list[Path]:
    """Store every image of a generation with its sidecar, and log each one."""
    saved = []
    for index, image in enumerate(generation.images):
        metadata = {
            "prompt": prompt.text,
            "source": source.name,
            "line": prompt.line,
            "task_id": generation.task_id,
            "variant": index,
            "width": image.width,
            "height": image.height,
            "bytes": len(image.png),
            "source_url": image.source_url,
            "source_format": image.source_format,
            "started_at": datetime.fromtimestamp(generation.started_at).isoformat(),
            "finished_at": datetime.fromtimestamp(generation.finished_at).isoformat(),
            "duration_s": round(generation.duration, 3),
            "timings_s": generation.timings,
        }
        path = save_image(settings.images, prompt.text, image.png, metadata)
        logs.success(prompt.text, relative(path, settings.home), generation.duration)
        saved.append(path)
    return saved


def failure_report(name: str, outcomes: list[Outcome]) -> str:
    """The text of ``<name>.error.txt``: which lines failed, why, and what to do."""
    lines = [f"{name}: {sum(o.error is not None for o in outcomes)} prompt(s) failed."]
    for outcome in outcomes:
        if outcome.error is None:
            kept = ", ".join(p.name for p in outcome.images)
            lines.append(f"line {outcome.prompt.line}: done ({kept})")
            continue
        hint = (
            "Sora refused this prompt: reword it."
            if isinstance(outcome.error, PermanentError)
            else "Sora did not answer in time after several tries: drop the file again later."
        )
        lines.append(
            f"line {outcome.prompt.line}: {outcome.error.name}: {outcome.error.detail}\n"
            f"  prompt: {outcome.prompt.text}\n  what to do: {hint}"
        )
    lines.append("Images of the lines marked done are kept in images/.")
    return "\n".join(lines) + "\n"

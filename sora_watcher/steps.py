"""The steps of one prompt, each written in its journal before it has effects (see journal):

    send: pending/submitting -> submitted    download: submitted -> downloaded
    publish: downloaded -> done              fail: -> failed

Which prompt takes which step when, and what a failed step means, is the pipeline's
business; a step raises the backend's ``GenerationError`` as it comes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

from loguru import logger

from sora_watcher import logs, metrics, pngmeta
from sora_watcher.backends.base import Capabilities, Generation, ImageBackend
from sora_watcher.config import Settings
from sora_watcher.errors import DownloadFailed, GenerationError, PermanentError, Unreachable
from sora_watcher.hooks import Hook
from sora_watcher.images import images_folder, publish_image, stage_image
from sora_watcher.journal import Entry, Journal, PromptState, Staged
from sora_watcher.quota import DailyCount
from sora_watcher.service import Board

BackendFactory = Callable[[], ImageBackend]


class Steps:
    def __init__(
        self,
        settings: Settings,
        make_backend: BackendFactory,
        capabilities: Capabilities,
        board: Board,
        today: DailyCount,
    ) -> None:
        self.settings = settings
        self.make_backend = make_backend
        self.capabilities = capabilities
        self.board = board
        self.today = today
        self.on_success = Hook(settings.on_success, settings.hook_timeout)
        self.on_failure = Hook(settings.on_failure, settings.hook_timeout)
        self._backend: ImageBackend | None = None

    def backend(self) -> ImageBackend:
        """The backend, made at first use and again after ``close()`` (a pause closes it)."""
        if self._backend is None:
            self._backend = self.make_backend()
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            try:
                self._backend.close()
            except Exception as exc:  # the process is ending; say it, do not crash on it
                logger.warning("closing the backend: {}", exc)
            self._backend = None

    def send(self, journal: Journal, entry: Entry, at_hand: Iterable[Journal]) -> None:
        """pending/submitting -> submitted. The journal says "submitting" before the click.

        ``at_hand``: every journal in progress, whose tasks a look-up must not take."""
        backend = self.backend()
        if entry.state is PromptState.SUBMITTING:
            # We may have crashed after Sora took the prompt: look before submitting again.
            try:
                found = backend.find_task(entry.text, entry.submitting_since or 0.0)
            except PermanentError as exc:  # only the look-up failed, not the prompt
                raise Unreachable(f"looking for a task submitted before: {exc.detail}") from None
            # every entry, finished ones too: a task already made into an image is not this one
            owned = {e.task_id for j in at_hand for e in j.entries if e is not entry}
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
            generation = self.backend().collect(entry.task_id, entry.job_options)
            entry.staged = self.stage(journal, entry, generation)
        except GenerationError:
            if not self.capabilities.follows_tasks:  # the call is over: the next try sends it
                journal.forget_task(entry)
            raise
        entry.state = PromptState.DOWNLOADED
        journal.save(entry)
        self.today.add(len(entry.staged))  # made, if not yet in images/

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
                **image.details,  # this image's own (its seed, in a batch)
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
            settings = pngmeta.settings_line(metadata)
            negative = entry.job_options.negative_prompt
            try:
                png = pngmeta.tag(image.png, entry.text, settings, metadata, negative)
            except ValueError as exc:  # the backend let through what is not a whole PNG
                raise DownloadFailed(f"{image.source_url}: {exc}") from None
            metadata["bytes"] = len(png)
            path = stage_image(journal.folder, png)
            staged.append(Staged(path.name, metadata))
        return staged

    def publish(self, journal: Journal, entry: Entry) -> None:
        """downloaded -> done: each staged image to images/ under its final name, which is
        written down before the link, so that a restart recognises it."""
        finished = time.time()
        started = entry.started_at or finished
        entry.images = []
        for staged in entry.staged:

            def remember(name: str, staged: Staged = staged) -> None:
                staged.target = name
                journal.save(entry)

            path = publish_image(
                journal.folder / staged.file,
                images_folder(self.settings.images, entry.folder),
                entry.text,
                staged.metadata,
                staged.target,
                remember,
            )
            entry.images.append(path.name)
            shown = logs.relative(path, self.settings.home)
            seconds = staged.metadata.get("duration_s", finished - started)  # as the sidecar says
            logs.success(entry.text, shown, float(seconds))
            metrics.image_made(float(seconds))
            self.board.succeeded(entry.text, shown)
            source = str(journal.input_path)
            self.on_success.run(str(path), source, entry.text, task_id=entry.task_id or "")
        entry.state = PromptState.DONE
        journal.save(entry)
        for staged in entry.staged:
            (journal.folder / staged.file).unlink(missing_ok=True)

    def fail(self, journal: Journal, entry: Entry, error: GenerationError) -> None:
        entry.state = PromptState.FAILED
        entry.error = {"class": error.name, "detail": error.detail}
        journal.save(entry)
        logs.failure(entry.text, error.name, error.detail)
        metrics.prompt_failed(error.name)
        self.board.failed(entry.text, f"{error.name}: {error.detail}")
        self.on_failure.run("", str(journal.input_path), entry.text, error=error.name)

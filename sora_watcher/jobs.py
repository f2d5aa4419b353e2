"""One input's life: claimed from the inbox (or found in processing/ after a restart), read
into its journal, and, once every prompt is finished, moved to processed/ or failed/ with a
report of what failed and what to do about it.

Whatever an input holds, it must not stop the daemon: an input that cannot be read goes to
failed/ with the reason, and the daemon goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from sora_watcher import inputs, logs
from sora_watcher.backends.base import Capabilities
from sora_watcher.config import Settings
from sora_watcher.errors import what_to_do
from sora_watcher.folders import Folders, JobState
from sora_watcher.images import images_folder
from sora_watcher.inputs import InputError, Rules, read_prompts
from sora_watcher.job_view import prompt_record
from sora_watcher.journal import Journal, PromptState
from sora_watcher.records import JobStatus, PromptRecord, Record, Records, id_of_file, untag


class Jobs:
    def __init__(
        self,
        settings: Settings,
        folders: Folders,
        rules: Rules,
        capabilities: Capabilities,
        moves_inputs: bool,
        records: Records | None = None,
        on_end: Callable[[Record], None] | None = None,
    ) -> None:
        self.settings = settings
        self.folders = folders
        self.rules = rules
        self.capabilities = capabilities
        self.moves_inputs = moves_inputs  # False for `generate`: its prompt file stays put
        self.unfinished = 0  # inputs that did not end in processed/ (for `once`)
        self.records = records  # None for `generate`: its file is no job of the queue
        self.on_end = on_end or (lambda record: None)  # a job ended: tell who asked (webhooks)

    def open(self, path: Path) -> Journal | None:
        """Claim an input (or take one left in processing/); its journal, if it has work."""
        try:
            return self.read(path)
        except Exception as exc:  # whatever an input holds, it must not stop the daemon
            logger.exception("{}: unexpected error: {}", path.name, exc)
            claimed = self.folders.processing / path.name
            if os.path.lexists(claimed) and not Journal.path_for(claimed).exists():
                self.fail_unreadable(claimed, f"cannot read it: {type(exc).__name__}: {exc}")
            return None

    def read(self, path: Path) -> Journal | None:
        if path.parent == self.folders.processing:
            claimed: Path | None = path if os.path.lexists(path) else None
        else:
            claimed = self.folders.claim(path)
        if claimed is None:
            return None  # already taken by another worker, or by an earlier event for the file
        if Journal.path_for(claimed).exists():
            journal = self.resume(claimed)
        else:
            journal = self.start(claimed, path.name)
        if journal is not None and not self.capabilities.follows_tasks:
            send_again(journal)
        return journal

    def resume(self, claimed: Path) -> Journal | None:
        """The journal of an input a run before this one left in progress."""
        journal_path = Journal.path_for(claimed)
        try:
            return Journal.load(journal_path)
        except (ValueError, KeyError, TypeError) as exc:
            self.fail_unreadable(
                claimed,
                f"its journal {journal_path.name} is damaged ({exc}); some of its images may "
                "already be in images/: check before dropping it again",
            )
            journal_path.unlink()
            return None

    def start(self, claimed: Path, name: str) -> Journal | None:
        """A new journal for a new input; ``name``: its name in the inbox."""
        logger.info("processing {}", claimed.name)
        job_id, name = untag(name)  # the id stays in the file's name, the reader sees the rest
        record = self.take_record(job_id, name, claimed)
        try:
            prompts = read_prompts(claimed, self.rules, name=name)
        except (InputError, OSError) as exc:
            self.fail_unreadable(claimed, str(exc), record)
            return None
        # A retry makes only what failed; an input dropped again is made again, whole.
        done = record.images_made() if record is not None and record.retried else {}
        job = None if record is None else record.id
        journal = Journal.start(claimed, prompts, name=name, job_id=job, done=done)
        for entry in journal.entries:
            if entry.error is not None:
                logs.failure(entry.text, entry.error["class"], entry.error["detail"])
        return journal

    def fail_unreadable(self, claimed: Path, reason: str, record: Record | None = None) -> None:
        report = f"{claimed.name}: {reason}\n"
        try:
            if record is None:
                record = self.take_record(*untag(claimed.name), claimed)
            if record is not None:
                self.end_record(record, JobStatus.FAILED, [], report)
        except Exception as exc:  # the input goes to failed/ all the same, with its reason
            logger.opt(exception=exc).error("{}: its job record: {}", claimed.name, exc)
            record = None
        final = self.folders.finish(claimed, JobState.FAILED, report, None, self.remember(record))
        logger.error("{} moved to {}: {}", claimed.name, final, reason)
        self.unfinished += 1

    # -- its record (see records) ---------------------------------------------------------------

    def take_record(self, job_id: str | None, name: str, claimed: Path) -> Record | None:
        """The job's record, marked as processing (a new one for an input dropped by hand).

        Taken again after a crash (the claim was made, the journal not yet), it is the same
        run: the run number names the webhook of the job's end, which must not change.
        """
        if self.records is None:
            return None
        job_id = job_id or id_of_file(claimed)
        record = self.records.load(job_id) or Record(job_id, name, "inbox")
        if record.state is JobStatus.PROCESSING and record.claimed == str(claimed):
            return record
        record.state = JobStatus.PROCESSING
        record.started_at = time.time()
        record.finished_at = None
        record.runs += 1
        record.claimed = str(claimed)
        self.records.save(record)
        return record

    def end_record(
        self, record: Record, state: JobStatus, prompts: list[PromptRecord], reason: str | None
    ) -> None:
        """Written before the input moves: a crash after it runs this again, and the same
        event (the same webhook id) is announced again rather than lost."""
        assert self.records is not None
        record.state, record.prompts, record.reason = state, prompts, reason
        record.finished_at = time.time()
        record.retried = False
        self.records.save(record)
        self.on_end(record)

    def remember(
        self, record: Record | None, also: Callable[[str], None] | None = None
    ) -> Callable[[str], None]:
        """What the move calls with the input's final name before it moves it: the record
        writes it down (a retry looks for the input there), then ``also``."""

        def write_down(chosen: str) -> None:
            if also is not None:
                also(chosen)
            if record is not None and self.records is not None:
                record.final = str(self.final_folder(record) / chosen)
                self.records.save(record)

        return write_down

    def final_folder(self, record: Record) -> Path:
        state = JobState.FAILED if record.state is JobStatus.FAILED else JobState.PROCESSED
        return self.folders.of(state)

    def record_of(self, journal: Journal) -> Record | None:
        if self.records is None:
            return None
        record = self.records.load(journal.job_id) if journal.job_id else None
        if record is None:  # a journal from before records (or its record lost): one now
            record = self.take_record(journal.job_id, journal.input_name, journal.input_path)
            journal.job_id = record.id if record else None
        return record

    def finish(self, journal: Journal) -> None:
        """Move the input to its last folder; the journal goes once the move is done."""
        claimed = journal.input_path
        failures = [e for e in journal.entries if e.state is PromptState.FAILED]
        if journal.outcome is None:
            journal.outcome = JobState.FAILED.value if failures else JobState.PROCESSED.value
            journal.reason = failure_report(journal) if failures else None
            journal.save()

        def write_down(name: str) -> None:
            journal.final = name
            journal.save()

        state = JobState(journal.outcome)
        record = self.record_of(journal)
        if record is not None:
            ended = JobStatus.FAILED if state is JobState.FAILED else JobStatus.DONE
            prompts = [prompt_record(entry) for entry in journal.entries]
            self.end_record(record, ended, prompts, journal.reason)
        first = journal.entries[0]
        if state is JobState.PROCESSED and first.images:
            image = images_folder(self.settings.images, first.folder) / first.images[-1]
            inputs.finished(journal.input_name, first.text, image, self.settings.home)  # plug-ins
        if not self.moves_inputs:
            return
        remember = self.remember(record, write_down)
        final = self.folders.finish(claimed, state, journal.reason, journal.final, remember)
        journal.remove()
        if failures:
            self.unfinished += 1
            logger.error("{}: {} prompt(s) failed, moved to {}", claimed.name, len(failures), final)
        else:
            images = sum(len(e.images) for e in journal.entries)
            logger.info("{}: {} image(s), moved to {}", claimed.name, images, final)


def send_again(journal: Journal) -> None:
    """Generations that were in flight when the last run ended are lost with it (a call has
    no task to look up later): they are sent again."""
    for entry in journal.unfinished():
        if entry.state in (PromptState.SUBMITTING, PromptState.SUBMITTED):
            logger.info("{} line {}: sent again", journal.input_name, entry.line)
            journal.forget_task(entry)


def failure_report(journal: Journal) -> str:
    """The text of ``<name>.error.txt``: which lines failed, why, and what to do."""
    failed = [e for e in journal.entries if e.state is PromptState.FAILED]
    lines = [f"{journal.input_name}: {len(failed)} prompt(s) failed."]
    for entry in journal.entries:
        if entry.error is None:
            lines.append(f"line {entry.line}: done ({', '.join(entry.images)})")
            continue
        hint = what_to_do(entry.error["class"], entry.attempts)
        lines.append(
            f"line {entry.line}: {entry.error['class']}: {entry.error['detail']}\n"
            f"  prompt: {entry.text}\n  what to do: {hint}"
        )
    lines.append("Images of the lines marked done are kept in images/.")
    return "\n".join(lines) + "\n"

"""One input's life: claimed from the inbox (or found in processing/ after a restart), read
into its journal, and, once every prompt is finished, moved to processed/ or failed/ with a
report of what failed and what to do about it.

Whatever an input holds, it must not stop the daemon: an input that cannot be read goes to
failed/ with the reason, and the daemon goes on.
"""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

from sora_watcher import inputs, logs
from sora_watcher.backends.base import Capabilities
from sora_watcher.config import Settings
from sora_watcher.folders import Folders, JobState
from sora_watcher.images import images_folder
from sora_watcher.inputs import InputError, Rules, read_prompts
from sora_watcher.journal import Journal, PromptState

HINTS = {  # what to do, by the error's class; others: see failure_report
    "InputError": "fix this entry and drop the rest again in a new file.",
    "InvalidRequest": "the service refused an option of this entry: fix it and drop it again.",
    "ContentRejected": "the service refused this prompt: reword it.",
    "OverDailyLimit": "ask for fewer variants, or raise SORA_DAILY_LIMIT.",
}


class Jobs:
    def __init__(
        self,
        settings: Settings,
        folders: Folders,
        rules: Rules,
        capabilities: Capabilities,
        moves_inputs: bool,
    ) -> None:
        self.settings = settings
        self.folders = folders
        self.rules = rules
        self.capabilities = capabilities
        self.moves_inputs = moves_inputs  # False for `generate`: its prompt file stays put
        self.unfinished = 0  # inputs that did not end in processed/ (for `once`)

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
        try:
            prompts = read_prompts(claimed, self.rules, name=name)
        except (InputError, OSError) as exc:
            self.fail_unreadable(claimed, str(exc))
            return None
        journal = Journal.start(claimed, prompts, name=name)
        for entry in journal.entries:
            if entry.error is not None:
                logs.failure(entry.text, entry.error["class"], entry.error["detail"])
        return journal

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
        first = journal.entries[0]
        if state is JobState.PROCESSED and first.images:
            image = images_folder(self.settings.images, first.folder) / first.images[-1]
            inputs.finished(journal.input_name, first.text, image, self.settings.home)  # plug-ins
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

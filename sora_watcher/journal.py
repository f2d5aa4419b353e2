"""The journal of an input in progress: ``processing/<worker>/<name>.state.json``.

It records, for each prompt, how far it went, so that a restart after a crash resumes instead
of starting over. Every change is on disk (written and fsynced) *before* the step it announces
has effects that a crash could duplicate:

    pending -> submitting -> submitted (task id) -> downloaded (staged files) -> done (images)
                                                                              \\-> failed (error)

- ``submitting`` is written before the click: if the crash comes after Sora took the prompt but
  before its task id was written, the restart finds that task in Sora's task list.
- ``downloaded`` lists images staged in ``processing/``; each final name is written down before
  the image is linked there, so a restart recognises an image it already published.

The file is JSON lines, so that recording a step costs the same for an input of 10 lines as
for one of 10,000. The first line is a snapshot of the whole journal, written atomically
(temporary file, fsync, rename). Each later line is one change, appended and fsynced:

    {"input_name": ..., "entries": [...], "created_at": ..., "outcome": ..., ...}
    {"entry": 3, "line": 4, "text": ..., "state": "submitting", ...}   one entry, all of it
    {"outcome": "processed", "final": ..., "reason": ...}               the journal's own fields

Loading replays the lines, the last one of an entry winning. A crash in the middle of an
append leaves a torn last line: it is ignored, since its step was never taken (steps are
taken only once the append is on disk), and the next change writes a fresh snapshot instead
of appending after it. A bad line anywhere else is a damaged journal (``ValueError``). When
retries have piled up many lines, a fresh snapshot replaces them. A journal written as one
indented JSON document (before this format) loads too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from sora_watcher.atomic import fsync_folder, write_atomically
from sora_watcher.backends.base import JobOptions
from sora_watcher.inputs import Prompt

SUFFIX = ".state.json"
JOURNAL_FIELDS = ("outcome", "final", "reason")  # what a change of the journal's own records


class PromptState(str, Enum):
    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    DOWNLOADED = "downloaded"
    DONE = "done"
    FAILED = "failed"


@dataclass
class Staged:
    file: str  # name of the staged PNG in the worker's processing folder
    metadata: dict[str, Any]  # what goes into the image's sidecar
    target: str | None = None  # the final name in images/, written before the link


@dataclass(eq=False)  # entries are told apart by identity: two may hold the same prompt
class Entry:
    line: int
    text: str
    options: dict[str, Any]
    state: PromptState = PromptState.PENDING
    attempts: int = 0  # transient failures so far; survives restarts
    task_id: str | None = None
    started_at: float | None = None  # first try, for the duration in the log
    submitting_since: float | None = None
    staged: list[Staged] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    error: dict[str, str] | None = None  # {"class", "detail"}
    folder: str | None = None  # a sub-folder of images/
    index: int = field(default=0, init=False, repr=False)  # its place in the journal, not saved
    # When it may be tried again (a monotonic time), after a transient error or the service's
    # "too many at once". Not saved: after a restart it is tried at once.
    retry_at: float | None = field(default=None, init=False, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in (PromptState.DONE, PromptState.FAILED)

    @property
    def job_options(self) -> JobOptions:
        return JobOptions(**self.options)

    @classmethod
    def of(cls, prompt: Prompt) -> Entry:
        entry = cls(prompt.line, prompt.text, asdict(prompt.options), folder=prompt.folder)
        if prompt.error is not None:  # a bad row of its own: failed before it starts
            entry.state = PromptState.FAILED
            entry.error = {"class": "InputError", "detail": prompt.error}
        return entry

    def to_dict(self) -> dict[str, Any]:
        """What the journal keeps of it (every field but ``index`` and ``retry_at``)."""
        return {
            "line": self.line,
            "text": self.text,
            "options": self.options,
            "state": self.state.value,
            "attempts": self.attempts,
            "task_id": self.task_id,
            "started_at": self.started_at,
            "submitting_since": self.submitting_since,
            "staged": [
                {"file": s.file, "metadata": s.metadata, "target": s.target} for s in self.staged
            ],
            "images": self.images,
            "error": self.error,
            "folder": self.folder,
        }

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Entry:
        item = dict(item)
        item["state"] = PromptState(item["state"])
        item["staged"] = [Staged(**s) for s in item["staged"]]
        return cls(**item)


@dataclass
class Journal:
    path: Path
    input_name: str
    entries: list[Entry]
    created_at: float = field(default_factory=time.time)
    outcome: str | None = None  # "processed" | "failed", once every prompt is finished
    final: str | None = None  # the input's name in its last folder, written before the move
    reason: str | None = None  # the text of <name>.error.txt
    job_id: str | None = None  # its record (see records); None in a journal older than them
    # Changes appended since the snapshot; None: the file cannot take one more (not written
    # yet, written in the old format, or ending in a torn line), the next save rewrites it.
    appended: int | None = field(default=None, init=False, repr=False, compare=False)
    # Every entry before this one is finished (entries never leave done or failed).
    first_unfinished: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for index, entry in enumerate(self.entries):
            entry.index = index

    @property
    def folder(self) -> Path:
        """Where the input, its journal and its staged images are."""
        return self.path.parent

    @property
    def input_path(self) -> Path:
        return self.path.with_name(self.path.name.removesuffix(SUFFIX))

    @staticmethod
    def path_for(claimed: Path) -> Path:
        return claimed.with_name(claimed.name + SUFFIX)

    @classmethod
    def start(
        cls,
        claimed: Path,
        prompts: list[Prompt],
        name: str | None = None,
        job_id: str | None = None,
        done: dict[tuple[int, str], list[str]] | None = None,
    ) -> Journal:
        """``name``: the input's name as read (the claim may have numbered it); ``done``: the
        images of prompts (by line and text) an earlier run already made, not made again."""
        entries = [Entry.of(prompt) for prompt in prompts]
        for entry in entries:
            images = (done or {}).get((entry.line, entry.text))
            if images and entry.error is None:
                entry.state, entry.images = PromptState.DONE, images
        journal = cls(cls.path_for(claimed), name or claimed.name, entries, job_id=job_id)
        journal.write_snapshot()
        return journal

    @classmethod
    def load(cls, path: Path) -> Journal:
        """Raises ``ValueError`` (or ``KeyError``, ``TypeError``) if the file is damaged."""
        data = path.read_bytes()
        try:  # the old format, or a snapshot with no change after it
            records = [json.loads(data)]
            clean = data.endswith(b"\n") and data.count(b"\n") == 1  # not the old format
        except ValueError:
            records, clean = read_lines(path, data)
        snapshot = records[0] if records else None
        if not isinstance(snapshot, dict) or not isinstance(snapshot.get("entries"), list):
            raise ValueError(f"{path.name} does not start with a snapshot")
        items: list[dict[str, Any]] = snapshot.pop("entries")
        own = dict(snapshot)
        for number, change in enumerate(records[1:], 2):
            if not isinstance(change, dict):
                raise ValueError(f"line {number} of {path.name} is not an object")
            if "entry" in change:
                index = change.pop("entry")
                if type(index) is not int or not 0 <= index < len(items):
                    raise ValueError(f"line {number} of {path.name}: no entry {index!r}")
                items[index] = change
            elif set(change) <= set(JOURNAL_FIELDS):
                own.update(change)
            else:
                raise ValueError(f"line {number} of {path.name}: unknown change {sorted(change)}")
        journal = cls(path=path, entries=[Entry.from_dict(item) for item in items], **own)
        journal.appended = len(records) - 1 if clean else None
        return journal

    def save(self, entry: Entry | None = None) -> None:
        """On disk when it returns: ``entry``'s whole state, or without one the journal's
        own fields (outcome, final, reason)."""
        if entry is not None:
            assert self.entries[entry.index] is entry, "an entry of another journal"
            change = {"entry": entry.index, **entry.to_dict()}
        else:
            change = {name: getattr(self, name) for name in JOURNAL_FIELDS}
        if self.appended is None or self.appended >= 10 * len(self.entries) + 100:
            self.write_snapshot()  # holds the change too
            return
        appended, self.appended = self.appended, None  # if the write fails, it may be torn
        append_durably(self.path, encode(change))
        self.appended = appended + 1

    def write_snapshot(self) -> None:
        """The whole journal as a new file of one line, in place of the old one at once."""
        data = {
            "input_name": self.input_name,
            "entries": [entry.to_dict() for entry in self.entries],
            "created_at": self.created_at,
            "job_id": self.job_id,
            **{name: getattr(self, name) for name in JOURNAL_FIELDS},
        }
        write_atomically(self.path, encode(data))
        fsync_folder(self.path.parent)  # the rename too: the appends go to this file
        self.appended = 0

    def forget_task(self, entry: Entry) -> None:
        """Back to pending: a call that ended without an image, or with the process that
        made it, has no task to follow; the next try sends the prompt again."""
        entry.state, entry.task_id = PromptState.PENDING, None
        self.save(entry)

    def unfinished(self) -> Iterator[Entry]:
        """The entries from the first one not finished on, in order."""
        entries = self.entries
        while self.first_unfinished < len(entries) and entries[self.first_unfinished].finished:
            self.first_unfinished += 1
        for index in range(self.first_unfinished, len(entries)):
            yield entries[index]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def encode(record: dict[str, Any]) -> bytes:
    """One line of compact JSON (json's fast C encoder); newlines in strings are escaped, and
    so is all that is not ASCII: a lone surrogate from a JSON input has no UTF-8 form."""
    text = json.dumps(record, separators=(",", ":"), default=str)
    return (text + "\n").encode("utf-8")


def read_lines(path: Path, data: bytes) -> tuple[list[Any], bool]:
    """The records of a journal in lines, but a torn last one; and True if there was none."""
    lines = data.split(b"\n")  # not splitlines(): U+2028 and the like may be in a prompt
    tail = lines.pop()  # what follows the last newline: a torn append if anything
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines) and not tail:
                return records, False  # torn, though it reached its newline
            raise ValueError(f"line {number} of {path.name} is damaged") from None
    return records, not tail


def append_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)

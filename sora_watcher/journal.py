"""The journal of an input in progress: ``processing/<worker>/<name>.state.json``.

It records, for each prompt, how far it went, so that a restart after a crash resumes instead
of starting over. Every change is written atomically (temporary file, fsync, rename) *before*
the step it announces has effects that a crash could duplicate:

    pending -> submitting -> submitted (task id) -> downloaded (staged files) -> done (images)
                                                                              \\-> failed (error)

- ``submitting`` is written before the click: if the crash comes after Sora took the prompt but
  before its task id was written, the restart finds that task in Sora's task list.
- ``downloaded`` lists images staged in ``processing/``; each final name is written down before
  the image is linked there, so a restart recognises an image it already published.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from sora_driver.backend import JobOptions
from sora_watcher.folders import write_atomically
from sora_watcher.inputs import Prompt

SUFFIX = ".state.json"


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


@dataclass
class Journal:
    path: Path
    input_name: str
    entries: list[Entry]
    created_at: float = field(default_factory=time.time)
    outcome: str | None = None  # "processed" | "failed", once every prompt is finished
    final: str | None = None  # the input's name in its last folder, written before the move
    reason: str | None = None  # the text of <name>.error.txt

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
    def start(cls, claimed: Path, prompts: list[Prompt], name: str | None = None) -> Journal:
        """``name``: the input's name in the inbox (the claim may have numbered it)."""
        entries = [Entry.of(prompt) for prompt in prompts]
        journal = cls(cls.path_for(claimed), name or claimed.name, entries)
        journal.save()
        return journal

    @classmethod
    def load(cls, path: Path) -> Journal:
        raw = json.loads(path.read_text(encoding="utf-8"))
        entries = []
        for item in raw.pop("entries"):
            item["state"] = PromptState(item["state"])
            item["staged"] = [Staged(**s) for s in item["staged"]]
            entries.append(Entry(**item))
        return cls(path=path, entries=entries, **raw)

    def save(self) -> None:
        data = asdict(self)
        del data["path"]
        write_atomically(self.path, json.dumps(data, indent=1, default=str).encode("utf-8"))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

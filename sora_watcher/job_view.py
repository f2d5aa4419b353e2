"""A job as told to others: the API's answer about it, and the payload of its webhook.

The record (see records) says where the job stands; while it is worked on, its journal says
where each prompt stands. Images are given by their path under ``images/``, their URL on the
API, and what their sidecar knows.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sora_watcher.errors import what_to_do
from sora_watcher.images import images_folder
from sora_watcher.journal import SUFFIX, Entry, Journal
from sora_watcher.records import JobStatus, PromptRecord, Record

IMAGES_URL = "/v1/images/"


def moment(timestamp: float | None) -> str | None:
    """ISO 8601 in UTC, to the second: what programs in any language read."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def describe(record: Record, images: Path) -> dict[str, Any]:
    """The job's JSON. ``images``: the images folder, where the sidecars are read."""
    prompts = record.prompts
    if record.state is JobStatus.PROCESSING and record.claimed:
        prompts = prompts_in_progress(Path(record.claimed)) or prompts
    error = None
    if record.state is JobStatus.FAILED:
        error = {"detail": record.reason or "failed", "what_to_do": advice(prompts)}
    return {
        "id": record.id,
        "state": record.state.value,
        "name": record.name,
        "source": record.source,
        "created_at": moment(record.created_at),
        "started_at": moment(record.started_at),
        "finished_at": moment(record.finished_at),
        "runs": record.runs,
        "status_url": f"/v1/jobs/{record.id}",
        "prompts": [describe_prompt(prompt, images) for prompt in prompts],
        "error": error,
    }


def describe_prompt(prompt: PromptRecord, images: Path) -> dict[str, Any]:
    error = None
    if prompt.error is not None:
        error = {**prompt.error, "what_to_do": prompt.hint}
    return {
        "line": prompt.line,
        "text": prompt.text,
        "state": prompt.state,
        "images": [describe_image(path, images) for path in prompt.images],
        "error": error,
    }


def describe_image(path: str, images: Path) -> dict[str, Any]:
    return {"path": path, "url": IMAGES_URL + path, "sidecar": sidecar(images / path)}


def sidecar(image: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(image.with_suffix(".json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def prompts_in_progress(claimed: Path) -> list[PromptRecord] | None:
    """Each prompt's state from the journal of an input being worked on (None: no journal,
    it just ended or has not started)."""
    try:
        journal = Journal.load(claimed.with_name(claimed.name + SUFFIX))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [prompt_record(entry) for entry in journal.entries]


def prompt_record(entry: Entry) -> PromptRecord:
    """What a record keeps of a journal's entry."""
    folder = images_folder(Path(), entry.folder)
    paths = [(folder / name).as_posix() for name in entry.images]
    hint = None if entry.error is None else what_to_do(entry.error["class"], entry.attempts)
    return PromptRecord(entry.line, entry.text, entry.state.value, paths, entry.error, hint)


def advice(prompts: list[PromptRecord]) -> str:
    hints = [p.hint for p in prompts if p.hint]
    return hints[0] if hints else "read the error, fix the input, then retry the job."

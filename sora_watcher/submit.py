"""The ways into the queue besides dropping a file: a job submitted through the API, and a
failed job sent back. Both end as a file in ``inbox/``, so that the inbox stays the one way in
and everything the daemon promises for a dropped file (a claim, a journal, crash safety) holds.

A submission is checked with the same readers and rules as a file in the inbox, before it is
written, so that a bad one is refused with the same message instead of ending in failed/.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from sora_watcher.atomic import write_atomically
from sora_watcher.folders import Folders, move_without_overwrite
from sora_watcher.inputs import InputError, Rules, parse_prompts
from sora_watcher.inputs.common import safe_folder
from sora_watcher.records import JobStatus, Record, Records, new_id, untag

JOB_NAME = "job.json"  # the name a submitted JSON job is read under
MOVE_WAIT = 5.0  # seconds a retry waits for a just-ended job's input to reach failed/
MOVE_POLL = 0.02


class SubmitError(Exception):
    """What is wrong with a submission or a retry; the message says what to fix."""

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.field = field  # the body's field at fault, when one is
        self.status = status  # the HTTP status it answers with


@dataclass(frozen=True)
class Submitted:
    record: Record
    created: bool  # False: an earlier request with the same Idempotency-Key made it


def as_input(body: dict[str, Any]) -> tuple[str, bytes]:
    """The file a submission stands for: its name and its bytes."""
    job = {key: value for key, value in body.items() if key != "callback_url"}
    if "chart" in job:
        user = safe_folder(job.pop("user", None), "user")
        if job.keys() != {"chart"}:
            extra = ", ".join(sorted(job.keys() - {"chart"}))
            raise InputError(f"a chart job has only chart, user and callback_url, not {extra}")
        return f"theme_{user}.json", json.dumps(job["chart"]).encode()
    return JOB_NAME, json.dumps(job).encode()  # ASCII: a lone surrogate has no UTF-8


def check(name: str, data: bytes, rules: Rules) -> None:
    """The inbox's rules: the same reader, the same limits, the same messages."""
    if len(data) > rules.max_bytes:
        raise InputError(
            f"the job is {len(data)} bytes, over the limit of {rules.max_bytes} "
            "(SORA_MAX_INPUT_BYTES)"
        )
    parse_prompts(name, data, rules)


def digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def submit(
    body: dict[str, Any],
    rules: Rules,
    records: Records,
    folders: Folders,
    idempotency_key: str | None = None,
) -> Submitted:
    """Check a job, then write it into the inbox: its record first (so the daemon that claims
    it finds it), then the file, atomically (a hidden temporary name, then a rename).

    With an Idempotency-Key, the requests that carry it are served one at a time: the first
    binds the key to its job; the next ones get that job back, and write it again if the
    first one died before its file was in the inbox (that is why a client sends it again).
    """
    try:
        name, data = as_input(body)
        check(name, data, rules)
    except InputError as exc:
        raise SubmitError(str(exc), field_of(str(exc), body)) from None
    callback = body.get("callback_url")
    if idempotency_key is None:
        return queue(Record(new_id(), name, "api", callback_url=callback), data, records, folders)
    with records.key_lock(idempotency_key):
        bound = records.bound(idempotency_key)
        if bound is None:
            record = Record(new_id(), name, "api", callback_url=callback)
            records.bind(idempotency_key, record.id, digest(body))
            return queue(record, data, records, folders)
        job_id, bound_digest = bound
        if bound_digest != digest(body):
            raise SubmitError(
                "this Idempotency-Key was used for another job: use a new key for a new job",
                "Idempotency-Key",
                409,
            )
        earlier = records.load(job_id)
        if earlier is None or (earlier.state is JobStatus.QUEUED and lost(earlier, folders)):
            again = Record(job_id, name, "api", callback_url=callback)
            return Submitted(queue(again, data, records, folders).record, created=False)
        return Submitted(earlier, created=False)


def queue(record: Record, data: bytes, records: Records, folders: Folders) -> Submitted:
    records.save(record)
    folders.inbox.mkdir(parents=True, exist_ok=True)
    write_atomically(folders.inbox / record.file, data)
    logger.info("job {} queued ({})", record.id, record.name)
    return Submitted(record, created=True)


def lost(record: Record, folders: Folders) -> bool:
    """A queued job whose input is nowhere: its request died before the file was written.
    (Looked for in the inbox first: on its way, the file goes from there to processing/.)"""
    if os.path.lexists(folders.inbox / record.file):
        return False
    processing = folders.processing.parent  # every worker's
    return not any(processing.glob(f"*/{glob.escape(record.file)}"))


def field_of(message: str, body: dict[str, Any]) -> str | None:
    """The body's field a reader's message is about: the first one it names."""
    named = [(message.find(key), key) for key in body if key in message]
    if named:
        return min(named)[1]
    if "prompt" in message:  # "no prompt in this file", "line 2: the prompt has ..."
        return "prompts" if "prompts" in body else "prompt"
    return None


# -- retry ------------------------------------------------------------------------------------


def retry(record: Record, records: Records, folders: Folders) -> Path:
    """A failed job back into the inbox, under its tagged name so that it keeps its id; the
    prompts it already made are not made again (see ``Record.images_made``). Two retries of
    one job, in any process, are served one after the other: the second finds it queued."""
    with records.key_lock(f"retry {record.id}"):
        return retry_locked(records.load(record.id) or record, records, folders)


def retry_locked(record: Record, records: Records, folders: Folders) -> Path:
    record = settled(record, records)
    source = failed_file(record, folders)
    # A queued job whose input is still in failed/: a retry that died half-way.
    if record.state is not JobStatus.FAILED and not (record.state is JobStatus.QUEUED and source):
        raise SubmitError(
            f"job {record.id} is {record.state.value}: only a failed job is retried", status=409
        )
    if source is None and moving(record):
        raise SubmitError(
            f"job {record.id}: its input is still on its way to {folders.failed}; "
            "try again in a moment",
            status=409,
        )
    if source is None:
        raise SubmitError(
            f"job {record.id}: its input is no longer in {folders.failed}", status=409
        )
    record.state, record.retried = JobStatus.QUEUED, True
    records.save(record)  # before the move: the daemon may claim it at once
    target = move_without_overwrite(source, folders.inbox / record.file)
    Path(f"{source}.error.txt").unlink(missing_ok=True)  # the old failure's report
    logger.info("job {} sent back to the inbox as {}", record.id, target.name)
    return target


def moving(record: Record) -> bool:
    """A job whose end is written down and whose input has not left processing/ yet: the
    daemon writes the record first (see ``Jobs.end_record``), then its input's final path,
    then moves it (a link, then the old name unlinked)."""
    if not (record.state.ended and record.claimed and os.path.lexists(record.claimed)):
        return False
    if not record.final or not os.path.lexists(record.final):
        return True
    try:  # a new input of the same name may be worked on there since: not this job's
        return os.path.samefile(record.final, record.claimed)
    except OSError:
        return False  # gone between the two looks: moved


def settled(record: Record, records: Records) -> Record:
    """The record once its input has moved, so that a retry asked for as soon as the job
    says "failed" finds the input in failed/ (the move follows within milliseconds; a daemon
    that died in between moves it when it starts again, hence the bound)."""
    deadline = time.monotonic() + MOVE_WAIT
    while moving(record) and time.monotonic() < deadline:
        time.sleep(MOVE_POLL)  # the daemon (a thread or a process) moves it: the file is all we see
        record = records.load(record.id) or record
    return record


def failed_file(record: Record, folders: Folders) -> Path | None:
    """Where the job's input is in failed/: where its record says it went (written before
    the move), or under its tagged name."""
    candidates = [Path(record.final)] if record.final else []
    candidates.append(folders.failed / record.file)
    for path in candidates:
        if path.parent == folders.failed and os.path.lexists(path):
            return path
    return None


def retry_files(paths: list[Path], records: Records, folders: Folders) -> list[Path]:
    """Files of failed/ back into the inbox, each through its job's record if it has one;
    where each went."""
    if any(path.parent != folders.failed for path in paths):
        raise SubmitError(f"only the files of {folders.failed} are retried")
    by_final = {r.final: r.id for r in records.all() if r.final}
    moved = []
    for path in paths:
        job_id = untag(path.name)[0] or by_final.get(str(path))
        record = records.load(job_id) if job_id else None
        if record is not None and record.state is JobStatus.FAILED:
            moved.append(retry(record, records, folders))
            continue
        moved.append(move_without_overwrite(path, folders.inbox / path.name))
        Path(f"{path}.error.txt").unlink(missing_ok=True)
        logger.info("{} sent back to the inbox", path.name)
    return moved

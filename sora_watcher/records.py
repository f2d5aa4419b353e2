"""The job record: what a program that submitted an input can ask about it, for as long as it
likes: ``records/<id>.json``, one file per job.

The journal says how far each prompt went while its input is worked on, and goes with the
input; the record stays. It is written at three moments, each time whole and atomically:

    queued (the API wrote the input)  ->  processing (claimed)  ->  done | failed (finished)

A job's id travels in the name of its input: ``job_<hex>--<name>``, so the claim, a restart
or a retry never lose it, and the reader of the input sees ``<name>`` (``theme_alice.json``
stays a chart). An input dropped by hand keeps its name: its id is made from the file itself
(its inode and mtime, which the claim's rename keeps), so that a restart finds the same one.

Ids are made here and checked here: an id that does not match ``ID`` is refused before it
comes near a path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from loguru import logger

from sora_watcher.atomic import write_atomically

ID = re.compile(r"job_[0-9a-f]{20}")
TAGGED_NAME = re.compile(r"(?P<id>job_[0-9a-f]{20})--(?P<name>.+)")
KEYS_FOLDER = "keys"  # Idempotency-Key -> job id


class JobStatus(str, Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED)


def new_id() -> str:
    return "job_" + secrets.token_hex(10)


def id_of_file(path: Path) -> str:
    """The id of an input dropped by hand: the same for the file wherever it is moved (a
    rename keeps its inode and mtime), another for another file."""
    info = path.lstat()
    made_of = f"{info.st_dev}:{info.st_ino}:{info.st_mtime_ns}"
    return "job_" + hashlib.sha256(made_of.encode()).hexdigest()[:20]


def tag(job_id: str, name: str) -> str:
    """The input's name with its job's id in front: how the id travels with the file."""
    return f"{job_id}--{name}"


def untag(name: str) -> tuple[str | None, str]:
    """The job id a name carries (or None), and the name the input is read under."""
    match = TAGGED_NAME.fullmatch(name)
    if match is None:
        return None, name
    return match["id"], match["name"]


@dataclass
class PromptRecord:
    line: int
    text: str
    state: str  # a PromptState's value
    images: list[str] = field(default_factory=list)  # paths under images/
    error: dict[str, str] | None = None  # {"class", "detail"}
    hint: str | None = None  # what to do about the error


@dataclass
class Record:
    id: str
    name: str  # the input's name as read (without the id)
    source: str  # "api" or "inbox"
    state: JobStatus = JobStatus.QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    runs: int = 0  # times it was claimed from the inbox (a retry adds one; a restart does not)
    callback_url: str | None = None
    claimed: str | None = None  # where the input is worked on (an absolute path)
    final: str | None = None  # where the input ended (an absolute path), written before the move
    prompts: list[PromptRecord] = field(default_factory=list)
    reason: str | None = None  # the failure report (the text of <name>.error.txt)
    retried: bool = False  # sent back by a retry: its next run makes only what failed

    def images_made(self) -> dict[tuple[int, str], list[str]]:
        """The image names of the prompts a run before made, by (line, text)."""
        return {
            (p.line, p.text): [Path(image).name for image in p.images]
            for p in self.prompts
            if p.state == "done" and p.images
        }

    @property
    def file(self) -> str:
        """The input's name in the folders: with its id in front."""
        return tag(self.id, self.name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        data = dict(data)
        data["state"] = JobStatus(data["state"])
        data["prompts"] = [PromptRecord(**p) for p in data.get("prompts", [])]
        return cls(**data)


class Records:
    """The records folder. Every write is whole and atomic; a reader never sees half a record.

    Records read are kept in memory by their file's (mtime, size), so that listing the jobs
    (the dashboard does every two seconds) reads only the files that changed.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cache: dict[Path, tuple[tuple[int, int, int], Record]] = {}

    def path(self, job_id: str) -> Path:
        if not ID.fullmatch(job_id):
            raise KeyError(job_id)
        return self.folder / f"{job_id}.json"

    def save(self, record: Record) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps(record.to_dict(), indent=1)  # ASCII: a lone surrogate has no UTF-8
        write_atomically(self.path(record.id), data.encode("utf-8"))

    def load(self, job_id: str) -> Record | None:
        """The record of ``job_id`` (a copy of its own: change it, then ``save`` it); None if
        there is none, the id is malformed, or the file cannot be read (said in the log)."""
        try:
            path = self.path(job_id)
        except KeyError:
            return None
        found = self.read(path)
        return None if found is None else Record.from_dict(found.to_dict())

    def read(self, path: Path) -> Record | None:
        try:
            info = path.stat()
            # Each save is a new file (written aside, renamed): its inode tells two saves apart
            # that a coarse clock gave the same mtime, with the same size.
            version = (info.st_ino, info.st_mtime_ns, info.st_size)
            cached = self.cache.get(path)
            if cached is not None and cached[0] == version:
                return cached[1]
            record = Record.from_dict(json.loads(path.read_text("utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # damaged, or not ours
            logger.warning("job record {} cannot be read ({}); it is left alone", path, exc)
            return None
        self.cache[path] = (version, record)
        return record

    def all(self) -> Iterator[Record]:
        """Every record, in no order, not to be changed (``load`` one to change it); one that
        cannot be read is skipped."""
        if not self.folder.is_dir():
            return
        paths = set(self.folder.glob("job_*.json"))
        for gone in set(self.cache) - paths:
            del self.cache[gone]
        for path in paths:
            record = self.read(path)
            if record is not None:
                yield record

    def newest(self, state: JobStatus | None = None, limit: int = 50) -> list[Record]:
        chosen = [r for r in self.all() if state is None or r.state is state]
        chosen.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return chosen[:limit]

    def prune(self, days: int, now: float | None = None) -> int:
        """Remove the records of jobs that ended over ``days`` ago, and the Idempotency-Keys
        as old; how many records went. A job not ended is never removed."""
        if days <= 0:
            return 0
        cutoff = (time.time() if now is None else now) - days * 86400
        removed = 0
        for record in self.all():
            if record.state.ended and (record.finished_at or record.created_at) < cutoff:
                self.path(record.id).unlink(missing_ok=True)
                removed += 1
        for key in (self.folder / KEYS_FOLDER).glob("*.*"):
            with contextlib.suppress(FileNotFoundError):
                if key.stat().st_mtime < cutoff:
                    key.unlink()
        return removed

    # -- Idempotency-Key ------------------------------------------------------------------------

    def key_path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return self.folder / KEYS_FOLDER / f"{digest}.json"

    def bound(self, key: str) -> tuple[str, str] | None:
        """The (job id, body digest) an Idempotency-Key is bound to, if it is."""
        try:
            bound = json.loads(self.key_path(key).read_text("utf-8"))
            return str(bound["id"]), str(bound["body"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # damaged: bound again by the request that holds the key's lock

    def bind(self, key: str, job_id: str, body_digest: str) -> None:
        data = json.dumps({"id": job_id, "body": body_digest}).encode("utf-8")
        self.key_path(key).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.key_path(key), data)

    @contextlib.contextmanager
    def key_lock(self, key: str) -> Iterator[None]:
        """Held while a request with this Idempotency-Key is submitted: two requests with one
        key, in any process, are served one after the other (``flock``, let go by the kernel
        if the process dies)."""
        path = self.key_path(key).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

"""What the dashboard shows, read from what the daemon writes: its status board, the folders,
the images and the job records. No web library here: the routes (``dashboard``) render it."""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from sora_watcher.backends import Backend
from sora_watcher.config import Settings
from sora_watcher.folders import LOCK_FILE, lock_is_held
from sora_watcher.job_view import IMAGES_URL, advice, sidecar
from sora_watcher.records import JobStatus
from sora_watcher.server.context import Context
from sora_watcher.service import STATUS_FILE, Board
from sora_watcher.status import queue_depth, when
from sora_watcher.thumbnails import SOURCES, key

GALLERY_SIZE = 24  # the newest images shown
FAILED_SHOWN = 20  # the newest failed jobs shown

# What to do about a pause, by the error's class (the daemon logs its own, finer advice).
ADVICE = {
    "QuotaExceeded": "add credit to the account; the queue tries again by itself.",
    "DailyLimitReached": "nothing: the queue resumes at midnight (or raise SORA_DAILY_LIMIT).",
    "AccessDenied": "check the key's permissions and the project's model access (or verify "
    "the organization); the queue tries again by itself.",
    "ModelUnavailable": "set SORA_OPENAI_MODEL to a current model; the queue resumes once it "
    "is accepted.",
    "EndpointNotFound": "check OPENAI_BASE_URL (it ends in /v1); the queue resumes once it "
    "answers.",
    "RateLimited": "nothing: the queue resumes when the limit lifts.",
    "ConcurrencyLimited": "nothing: the queue resumes when the limit lifts.",
}


@dataclass(frozen=True)
class Shot:
    """An image of the gallery."""

    path: str  # under images/
    prompt: str
    made: str  # when, in full
    made_short: str  # the time if today, else the day
    image_url: str
    sidecar_url: str
    thumbnail_url: str


@dataclass(frozen=True)
class Failure:
    """A failed job of the list."""

    id: str
    name: str
    ended: str
    reason: str
    todo: str
    runs: int


@dataclass(frozen=True)
class DaemonState:
    name: str  # starting | idle | generating | paused | stopped
    detail: str
    since: str
    reason: str = ""  # a pause's cause: the error's class
    words: str = ""  # its detail, in the service's own words
    todo: str = ""  # what to do about it
    last_success: str = ""
    last_failure: str = ""

    @property
    def paused(self) -> bool:
        return self.name == "paused"


def daemon_state(ctx: Context) -> DaemonState:
    """This worker's status board, as ``status`` reads it."""
    folder = ctx.folders.processing
    board = Board.load(folder / STATUS_FILE)
    if board is None or not lock_is_held(folder / LOCK_FILE):
        return DaemonState("stopped", "the daemon is not running", "")
    since = when(board.since)  # not "n s ago": the fragment changes only when the state does
    reason, words, todo = "", "", ""
    if board.state == "paused":
        reason, _, words = board.detail.partition(": ")
        if not words or " " in reason:  # a detail that names no error class
            reason, words = "paused", board.detail
        todo = what_to_do(reason, ctx.settings, board.hint)
    return DaemonState(
        board.state,
        board.detail,
        since,
        reason,
        words,
        todo,
        outcome(board.last_success, "image"),
        outcome(board.last_failure, "error"),
    )


def outcome(event: Mapping[str, Any] | None, what: str) -> str:
    if not event:
        return ""
    return f'{when(float(event["time"]))} "{event.get("prompt", "")}" → {event.get(what, "")}'


def what_to_do(reason: str, settings: Settings, hint: str = "") -> str:
    """Plain advice for a pause, by its cause and the backend that met it; else the daemon's
    own hint (``hint``)."""
    if reason in ("CredentialsMissing", "CredentialsRefused", "SessionMissing", "SessionExpired"):
        if settings.backend is Backend.OPENAI:
            return (
                f"set OPENAI_API_KEY in {settings.env_file} (a valid key); the queue resumes "
                "once it is accepted."
            )
        return (
            "replace session.json: run `sora-watcher login` (or log in by hand and save a new "
            "session); the queue resumes by itself."
        )
    fallback = hint or "read the daemon's log; the queue resumes once the cause is gone."
    return ADVICE.get(reason, fallback)


def queue_counts(ctx: Context, images: int) -> list[tuple[str, int]]:
    """Inputs by folder, as ``sora-watcher status`` counts them, and the images made."""
    return [*queue_depth(ctx.settings).items(), ("images", images)]


def walk_images(folder: Path, prefix: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """Every image under ``folder`` (its path from there, its stat), never following a link
    nor looking at hidden names (images still being published)."""
    try:
        with os.scandir(folder) as entries:
            found = list(entries)
    except OSError:  # gone, or not ours to read
        return
    for entry in found:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from walk_images(Path(entry.path), f"{prefix}{entry.name}/")
            elif entry.name.lower().endswith(SOURCES) and entry.is_file(follow_symlinks=False):
                yield prefix + entry.name, entry.stat(follow_symlinks=False)
        except OSError:  # removed while we looked
            continue


def latest_images(images: Path, count: int) -> tuple[list[Shot], int]:
    """The ``count`` newest images, newest first, and how many there are in all."""
    total = 0

    def counted() -> Iterator[tuple[str, os.stat_result]]:
        nonlocal total
        for found in walk_images(images):
            total += 1
            yield found

    newest = heapq.nlargest(count, counted(), key=lambda f: (f[1].st_mtime_ns, f[0]))
    return [shot(path, stat, images) for path, stat in newest], total


def shot(path: str, stat: os.stat_result, images: Path) -> Shot:
    about = sidecar(images / path) or {}
    url = quote(path)
    return Shot(
        path=path,
        prompt=str(about.get("prompt", "")),
        made=when(stat.st_mtime),
        made_short=short_when(stat.st_mtime),
        image_url=IMAGES_URL + url,
        sidecar_url=IMAGES_URL + quote(str(PurePosixPath(path).with_suffix(".json"))),
        thumbnail_url=f"/thumbnails/{url}?v={key(path, stat)}",  # a replaced image: a new URL
    )


def short_when(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp)
    return moment.strftime("%H:%M:%S" if moment.date() == date.today() else "%Y-%m-%d")


def failures(ctx: Context) -> list[Failure]:
    return [
        Failure(
            r.id,
            r.name,
            when(r.finished_at or r.created_at),
            r.reason or "failed",
            advice(r.prompts),
            r.runs,
        )
        for r in ctx.records.newest(JobStatus.FAILED, FAILED_SHOWN)
    ]

"""The folder contract: one folder per job state, moves that never overwrite.

An input is claimed by an atomic rename from ``inbox/`` to ``processing/`` (like Maildir's
``new/`` -> ``cur/``): whoever renames it first owns it. Files never overwrite each other:
a name that is taken gets ``_2``, ``_3``, ... before its suffix.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from loguru import logger

from sora_watcher.config import Settings
from sora_watcher.errors import Fingerprint

IGNORED_SUFFIXES = (".tmp", ".part", ".swp", ".crdownload")
OWN_SUFFIXES = (".state.json", ".error.txt")  # files of ours that sit beside inputs


class JobState(str, Enum):
    INBOX = "inbox"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


def is_ignored(name: str) -> bool:
    """Names that are still being written, or are not inputs at all."""
    lowered = name.lower()
    return (
        name.startswith(".")
        or name.endswith("~")
        or lowered.endswith(IGNORED_SUFFIXES)
        or lowered.endswith(OWN_SUFFIXES)
    )


class FolderLocked(RuntimeError):
    pass


def hold_lock(path: Path) -> int:
    """Take the worker's lock for the life of the process; say who holds it if we cannot.

    ``flock`` is released by the kernel when the process dies, even by ``kill -9``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 100).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise FolderLocked(
            f"another sora-watcher (pid {holder}) already works on {path.parent}; "
            "give each daemon its own SORA_WORKER_ID to run several"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def numbered(path: Path, number: int) -> Path:
    return path if number == 1 else path.with_name(f"{path.stem}_{number}{path.suffix}")


def first_free(wanted: Path) -> Path:
    """The first of wanted, wanted_2, wanted_3 ... that does not exist yet."""
    number = 1
    while os.path.lexists(target := numbered(wanted, number)):
        number += 1
    return target


def publish(
    source: Path,
    wanted: Path,
    chosen: str | None = None,
    remember: Callable[[str], None] | None = None,
) -> Path:
    """Give ``source`` a second name, the first free one among wanted, wanted_2, ...

    ``os.link`` fails if the name exists, so taking a name is atomic even against another
    process and never overwrites. ``remember`` writes the chosen name down *before* the link;
    given back as ``chosen`` after a crash, it tells whether the link was already made.
    """
    if chosen is not None:
        previous = wanted.with_name(chosen)
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.lstat(source), os.lstat(previous)):
                return previous
    number = 1
    while True:
        target = numbered(wanted, number)
        number += 1
        if os.path.lexists(target):
            continue
        if remember is not None:
            remember(target.name)
        try:
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            continue
        return target


def move_without_overwrite(
    source: Path,
    wanted: Path,
    chosen: str | None = None,
    remember: Callable[[str], None] | None = None,
) -> Path:
    """Move a file to the first free name among wanted, wanted_2, ... (see ``publish``)."""
    if source.is_dir() and not source.is_symlink():
        # Folders cannot be hard-linked; they only come here as bad input, on their way out.
        target = first_free(wanted)
        source.rename(target)
        return target
    target = publish(source, wanted, chosen, remember)
    source.unlink()
    return target


def write_atomically(path: Path, data: bytes, durable: bool = True) -> None:
    """Write to a hidden temporary name, flush to disk, then rename: never a partial file.

    ``durable=False`` skips the fsync, for what may be lost in a power cut (a status note).
    """
    temporary = path.with_name(f".{path.name}.part")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        if durable:
            os.fsync(out.fileno())
    temporary.replace(path)


def fingerprint(path: Path) -> Fingerprint | None:
    """What tells this version of ``path`` from the next one; ``None`` if there is none."""
    with contextlib.suppress(FileNotFoundError):
        stat = path.stat()
        return (stat.st_mtime_ns, stat.st_ino)
    return None


def fsync_folder(folder: Path) -> None:
    """Make the renames and links done in ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Folders:
    inbox: Path
    processing: Path
    processed: Path
    failed: Path
    images: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> Folders:
        # Each worker has its own processing folder: at start-up it resumes its own inputs,
        # never those another daemon on the same folders is working on.
        return cls(
            settings.inbox,
            settings.processing / settings.worker_id,
            settings.processed,
            settings.failed,
            settings.images,
        )

    def ensure(self) -> None:
        for folder in (self.inbox, self.processing, self.processed, self.failed, self.images):
            folder.mkdir(parents=True, exist_ok=True)

    def of(self, state: JobState) -> Path:
        folder: Path = getattr(self, state.value)
        return folder

    def waiting(self, state: JobState) -> list[Path]:
        """Inputs waiting in a folder, oldest first."""
        entries = []
        for entry in self.of(state).iterdir():
            if is_ignored(entry.name):
                continue
            with contextlib.suppress(FileNotFoundError):  # claimed meanwhile by someone else
                entries.append((entry.lstat().st_mtime, entry.name, entry))
        return [entry for _, _, entry in sorted(entries)]

    def claim(self, path: Path) -> Path | None:
        """Move an inbox file to processing/; ``None`` if somebody else took it first.

        The rename is the claim: of two workers renaming the same file, one gets
        FileNotFoundError. The target is this worker's own processing folder, where an older
        input of the same name may still be (then the new one is numbered).
        """
        target = first_free(self.processing / path.name)
        try:
            path.rename(target)
        except FileNotFoundError:
            return None
        except OSError as exc:  # no permission, another file system: leave it, say why
            logger.error("cannot claim {}: {}", path.name, exc)
            return None
        return target

    def finish(
        self,
        claimed: Path,
        state: JobState,
        reason: str | None = None,
        chosen: str | None = None,
        remember: Callable[[str], None] | None = None,
    ) -> Path:
        """Move a claimed input to processed/ or failed/; beside a failure, why it failed."""
        final = self.of(state) / claimed.name
        if reason is not None:
            # Written first: a crash must not leave a failed input without its reason.
            target = publish_name(final, chosen)
            error_file = target.with_name(target.name + ".error.txt")
            write_atomically(error_file, reason.encode("utf-8", "backslashreplace"))
        return move_without_overwrite(claimed, final, chosen, remember)


def publish_name(wanted: Path, chosen: str | None) -> Path:
    """The name ``publish`` will most likely give: the one chosen before, or the first free."""
    if chosen is not None:
        return wanted.with_name(chosen)
    return first_free(wanted)


def image_name(prompt: str, when: datetime) -> str:
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:5]
    return f"{when:%Y%m%d_%H%M%S}_{digest}.png"


def stage_image(folder: Path, png: bytes) -> Path:
    """Write an image completely, under a hidden name of its own, before it gets its final
    name. Two prompts may well give the same bytes: the name must not depend on them."""
    fd, name = tempfile.mkstemp(prefix=".staged-", suffix=".png", dir=folder)
    os.close(fd)
    staged = Path(name)
    write_atomically(staged, png)
    return staged


def publish_image(
    staged: Path,
    folder: Path,
    prompt: str,
    metadata: dict[str, Any],
    chosen: str | None = None,
    remember: Callable[[str], None] | None = None,
) -> Path:
    """Give a staged image its name ``YYYYMMDD_HHMMSS_<hash>.png`` and write its sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    final = publish(staged, folder / image_name(prompt, datetime.now()), chosen, remember)
    sidecar = {"image": final.name, **metadata}
    write_atomically(final.with_suffix(".json"), json.dumps(sidecar, indent=2).encode("utf-8"))
    return final

"""The folder contract: one folder per job state, moves that never overwrite.

An input is claimed by an atomic rename from ``inbox/`` to ``processing/`` (like Maildir's
``new/`` -> ``cur/``): whoever renames it first owns it. Files never overwrite each other:
a name that is taken gets ``_2``, ``_3``, ... before its suffix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from loguru import logger

from sora_watcher.atomic import first_free, publish, publish_name, write_atomically

LOCK_FILE = ".lock"  # in a worker's processing folder, held by its daemon (see hold_lock)
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


def move_without_overwrite(
    source: Path,
    wanted: Path,
    chosen: str | None = None,
    remember: Callable[[str], None] | None = None,
) -> Path:
    """Move a file to the first free name among wanted, wanted_2, ... (see ``atomic.publish``)."""
    if source.is_dir() and not source.is_symlink():
        # Folders cannot be hard-linked; they only come here as bad input, on their way out.
        target = first_free(wanted)
        source.rename(target)
        return target
    target = publish(source, wanted, chosen, remember)
    source.unlink()
    return target


@dataclass(frozen=True)
class Folders:
    inbox: Path
    processing: Path
    processed: Path
    failed: Path
    images: Path

    @classmethod
    def for_worker(
        cls, inbox: Path, processing: Path, processed: Path, failed: Path, images: Path, worker: str
    ) -> Folders:
        """The folders of one worker: ``processing`` is shared, ``processing/<worker>`` is its.

        Each worker has its own processing folder: at start-up it resumes its own inputs,
        never those another daemon on the same folders is working on.
        """
        return cls(inbox, processing / worker, processed, failed, images)

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


def count_inputs(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for entry in folder.iterdir() if not is_ignored(entry.name))


def lock_is_held(lock: Path) -> bool:
    """Whether a living daemon holds this worker's lock (the kernel drops it when one dies)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also releases a lock we just took
    return False

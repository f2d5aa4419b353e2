"""The folder contract: one folder per job state, moves that never overwrite.

An input is claimed by an atomic rename from ``inbox/`` to ``processing/`` (like Maildir's
``new/`` -> ``cur/``): whoever renames it first owns it. Files never overwrite each other:
a name that is taken gets ``_2``, ``_3``, ... before its suffix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from sora_watcher.config import Settings

IGNORED_SUFFIXES = (".tmp", ".part", ".swp", ".crdownload")


class JobState(str, Enum):
    INBOX = "inbox"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


def is_ignored(name: str) -> bool:
    """Names that are still being written, or are not inputs at all."""
    return name.startswith(".") or name.endswith("~") or name.lower().endswith(IGNORED_SUFFIXES)


def numbered(path: Path, number: int) -> Path:
    return path if number == 1 else path.with_name(f"{path.stem}_{number}{path.suffix}")


def link_without_overwrite(source: Path, wanted: Path) -> Path:
    """Give ``source`` the first free name among wanted, wanted_2, ...; return that name.

    ``os.link`` fails if the name exists, so taking a name is atomic even against another
    process; the source name is removed only once the new one exists.
    """
    number = 1
    while True:
        target = numbered(wanted, number)
        try:
            os.link(source, target)
        except FileExistsError:
            number += 1
            continue
        source.unlink()
        return target


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a hidden temporary name, flush to disk, then rename: never a partial file."""
    temporary = path.with_name(f".{path.name}.part")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)


@dataclass(frozen=True)
class Folders:
    inbox: Path
    processing: Path
    processed: Path
    failed: Path
    images: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> Folders:
        return cls(
            settings.inbox,
            settings.processing,
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
            if is_ignored(entry.name) or entry.name.endswith(".error.txt"):
                continue
            with contextlib.suppress(FileNotFoundError):  # claimed meanwhile by someone else
                entries.append((entry.stat().st_mtime, entry.name, entry))
        return [entry for _, _, entry in sorted(entries)]

    def claim(self, path: Path) -> Path | None:
        """Move an inbox file to processing/; ``None`` if somebody else took it first."""
        target = self.processing / path.name
        number = 1
        while target.exists():  # an older input of the same name is still in progress
            number += 1
            target = numbered(self.processing / path.name, number)
        try:
            path.rename(target)
        except FileNotFoundError:
            return None
        return target

    def finish(self, claimed: Path, state: JobState, reason: str | None = None) -> Path:
        """Move a claimed input to processed/ or failed/; beside a failure, why it failed."""
        final = link_without_overwrite(claimed, self.of(state) / claimed.name)
        if reason is not None:
            error_file = final.with_name(final.name + ".error.txt")
            write_atomically(error_file, reason.encode("utf-8"))
        return final


def image_name(prompt: str, when: datetime) -> str:
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:5]
    return f"{when:%Y%m%d_%H%M%S}_{digest}.png"


def save_image(folder: Path, prompt: str, png: bytes, metadata: dict[str, Any]) -> Path:
    """Store an image under ``YYYYMMDD_HHMMSS_<hash>.png`` and its sidecar ``.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = folder / image_name(prompt, datetime.now())
    temporary = folder / f".{wanted.name}.{os.getpid()}.part"
    with open(temporary, "wb") as out:
        out.write(png)
        out.flush()
        os.fsync(out.fileno())
    final = link_without_overwrite(temporary, wanted)
    sidecar = {"image": final.name, **metadata}
    write_atomically(final.with_suffix(".json"), json.dumps(sidecar, indent=2).encode("utf-8"))
    return final

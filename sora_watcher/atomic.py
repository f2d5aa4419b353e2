"""Durable file operations: a file is whole or absent, a name once taken is never overwritten.

Writes go to a hidden temporary name, are flushed to disk, then renamed into place. Names are
taken with ``os.link``, which fails if the name exists: taking a name is atomic even against
another process. A name that is taken gets ``_2``, ``_3``, ... before its suffix.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from sora_watcher.errors import Fingerprint


def write_atomically(path: Path, data: bytes, durable: bool = True) -> None:
    """Write to a hidden temporary name, flush to disk, then rename: never a partial file.

    The temporary name is new at each call, so that two threads writing the same file at once
    never write into each other's. ``durable=False`` skips the fsync, for what may be lost in
    a power cut (a status note).
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        if durable:
            os.fsync(out.fileno())
    temporary.replace(path)


def fsync_folder(folder: Path) -> None:
    """Make the renames and links done in ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fingerprint(path: Path) -> Fingerprint | None:
    """What tells this version of ``path`` from the next one; ``None`` if there is none."""
    with contextlib.suppress(FileNotFoundError):
        stat = path.stat()
        return (stat.st_mtime_ns, stat.st_ino)
    return None


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


def publish_name(wanted: Path, chosen: str | None) -> Path:
    """The name ``publish`` will most likely give: the one chosen before, or the first free."""
    if chosen is not None:
        return wanted.with_name(chosen)
    return first_free(wanted)

"""Images in ``images/``: staged whole under a hidden name, then published under their own.

An image is named ``YYYYMMDD_HHMMSS_<5 hex>.png`` (the time and a hash of its prompt) and
has a JSON sidecar of the same stem. Nothing is ever overwritten: a name that is taken gets
``_2``, ``_3``, ... (see ``sora_watcher.atomic``).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sora_watcher.atomic import publish, write_atomically


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
    write_sidecar(final, metadata)
    return final


def write_sidecar(image: Path, metadata: dict[str, Any]) -> None:
    """``<image stem>.json`` beside the image: its name, then what is known of how it was made.

    Replaced if it exists: a publication resumed after a crash writes it again, whole.
    """
    sidecar = {"image": image.name, **metadata}
    write_atomically(image.with_suffix(".json"), json.dumps(sidecar, indent=2).encode("utf-8"))


def images_folder(images: Path, folder: str | None) -> Path:
    """Where an entry's images go: ``images/``, or the sub-folder its input names."""
    return images / folder if folder else images


def inside(root: Path, relative: str) -> Path | None:
    """The regular file at ``relative`` under ``root``, if every step of the way is a real
    folder of ``root`` (no ``..``, no symbolic link, no absolute path); None otherwise."""
    parts = relative.split("/")
    if not relative or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        return None
    path = root
    for part in parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except (OSError, ValueError):
            return None
        if stat.S_ISLNK(mode):
            return None
    return path if stat.S_ISREG(mode) else None

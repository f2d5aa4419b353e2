"""The dashboard's thumbnails: made once per image, then served from a cache folder.

A page of the dashboard shows two dozen images; decoding each full PNG on every view would
cost far more than the page itself. So a thumbnail (WebP, at most ``SIDE`` pixels a side) is
made the first time it is asked for and kept in ``SORA_THUMBNAILS_DIR``.

Its name is a digest of the image's path under ``images/``, its mtime and its size: an image
replaced under the same name gets a new thumbnail, and a stale one is simply never asked for
again. Only a regular ``.png`` under ``images/`` is read (no ``..``, no symbolic link: see
``images.inside``). A thumbnail is written whole or not at all, under a name of its
own until it is complete, so that two requests making the same one never clash.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sora_watcher.atomic import write_atomically
from sora_watcher.images import inside

SIDE = 256  # pixels, the longer side
SUFFIX = ".webp"
MEDIA_TYPE = "image/webp"
QUALITY = 80
VERSION = "1"  # in every key: a change of size or format makes new thumbnails
SOURCES = (".png",)  # what images/ holds, and what /v1/images serves


def key(relative: str, stat: os.stat_result) -> str:
    """The name of the thumbnail of this version of the image at ``relative``."""
    text = f"{VERSION}\0{relative}\0{stat.st_mtime_ns}\0{stat.st_size}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def render(image: Path) -> bytes | None:
    """The thumbnail's bytes; None if the file is not an image Pillow can read."""
    try:
        with Image.open(image) as picture:
            picture.thumbnail((SIDE, SIDE))
            clear = "A" in picture.getbands() or "transparency" in picture.info
            wanted = "RGBA" if clear else "RGB"  # what WebP holds; a palette is converted
            small = picture if picture.mode == wanted else picture.convert(wanted)
            out = io.BytesIO()
            small.save(out, format="WEBP", quality=QUALITY)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return out.getvalue()


@dataclass(frozen=True)
class Thumbnails:
    images: Path  # the images folder: nothing outside it is read
    cache: Path  # SORA_THUMBNAILS_DIR

    def source(self, relative: str) -> Path | None:
        """The image at ``relative`` under ``images/``; None if there is none to show."""
        found = inside(self.images, relative)
        if found is None or found.suffix.lower() not in SOURCES:
            return None
        return found

    def get(self, relative: str) -> tuple[Path, str] | None:
        """The thumbnail of the image at ``relative`` and its key, made now if it is not in
        the cache; None if there is no such image, or it cannot be read."""
        image = self.source(relative)
        if image is None:
            return None
        try:
            name = key(relative, image.stat())
        except OSError:  # removed in the meantime
            return None
        cached = self.cache / (name + SUFFIX)
        if cached.is_file():
            return cached, name  # the full image is not even opened
        data = render(image)
        if data is None:
            return None
        self.store(cached, data)
        return cached, name

    def store(self, cached: Path, data: bytes) -> None:
        """Written aside under a name of its own, then renamed into place."""
        self.cache.mkdir(parents=True, exist_ok=True)
        aside = cached.with_name(f".{cached.stem}.{secrets.token_hex(4)}.tmp")
        write_atomically(aside, data)
        os.replace(aside, cached)

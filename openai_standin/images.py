"""The images of a generation: real, complete files of the answered size and format.

Colours come from a 64-colour palette, chosen from the prompt's sha256 and the image's index, so
the images of one call always differ and a prompt always gives the same picture. The small
palette is what makes the cache work: a benchmark sends thousands of distinct prompts, but only
64 pictures per size and format ever get encoded, so large sizes cost little CPU.
"""

from __future__ import annotations

import base64
import hashlib
import io
from functools import lru_cache

from PIL import Image, ImageDraw

_LEVELS = (32, 96, 160, 224)  # 4 levels per channel: 64 colours
PALETTE_SIZE = len(_LEVELS) ** 3
# Steps through the palette by a number prime to its size: indices 0-63 never collide.
_INDEX_STEP = 21


def colour(prompt: str, index: int) -> tuple[int, int, int]:
    start = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    k = (start + _INDEX_STEP * index) % PALETTE_SIZE
    return _LEVELS[k >> 4], _LEVELS[(k >> 2) & 3], _LEVELS[k & 3]


def encoded(
    size: tuple[int, int],
    output_format: str,
    rgb: tuple[int, int, int],
    transparent: bool,
    compression: int,
) -> bytes:
    """One picture, encoded: a disc of `rgb` on its complementary colour (or on nothing)."""
    width, height = size
    inverse = (255 - rgb[0], 255 - rgb[1], 255 - rgb[2], 0 if transparent else 255)
    picture = Image.new("RGBA" if transparent else "RGB", size, inverse)
    margin = min(width, height) // 8
    ImageDraw.Draw(picture).ellipse(
        (margin, margin, width - margin, height - margin), fill=(*rgb, 255)
    )
    buffer = io.BytesIO()
    if output_format == "png":
        picture.save(buffer, "PNG", compress_level=1)  # fast: a 4K image in tens of ms
    elif output_format == "jpeg":
        # output_compression is how much to compress: 100 is the API's default, so it maps to
        # a usual JPEG quality rather than the worst one.
        picture.save(buffer, "JPEG", quality=max(5, min(95, 100 - compression // 2)))
    else:
        picture.save(buffer, "WEBP", quality=max(5, 100 - compression // 2), method=0)
    return buffer.getvalue()


# 256 entries: the whole palette in four size-and-format combinations. A 3840x2160 PNG takes
# about 0.2 s to encode and 170 kB to keep.
@lru_cache(maxsize=256)
def _b64(
    size: tuple[int, int],
    output_format: str,
    rgb: tuple[int, int, int],
    transparent: bool,
    compression: int,
) -> str:
    return base64.b64encode(encoded(size, output_format, rgb, transparent, compression)).decode()


def b64_image(
    prompt: str,
    index: int,
    size: tuple[int, int],
    output_format: str = "png",
    transparent: bool = False,
    compression: int = 100,
) -> str:
    """The `b64_json` of image `index` of a generation of `prompt`."""
    return _b64(size, output_format, colour(prompt, index), transparent, compression)

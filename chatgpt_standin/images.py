"""The files of a generation: a full-size PNG and a small blurred preview, made with Pillow.

The pictures come from sora_standin's deterministic painter: the same prompt and index always
give the same bytes, and two prompts give visibly different files.
"""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image, ImageFilter

from sora_standin import images as painter

PREVIEW_SCALE = 4  # a preview is a quarter of the final size each way (256 px for 1024)
SQUARE = (1024, 1024)
PORTRAIT = (1024, 1536)
LANDSCAPE = (1536, 1024)


def final_png(prompt: str, index: int, size: tuple[int, int]) -> bytes:
    """The full-size PNG (cached by the painter)."""
    return painter.render(prompt, index, size, "png")


def preview_size(size: tuple[int, int]) -> tuple[int, int]:
    return size[0] // PREVIEW_SCALE, size[1] // PREVIEW_SCALE


@lru_cache(maxsize=32)
def preview_jpeg(prompt: str, index: int, size: tuple[int, int]) -> bytes:
    """A small, blurred JPEG of the final picture, as the page shows while generating."""
    picture = Image.open(io.BytesIO(final_png(prompt, index, size)))
    small = picture.resize(preview_size(size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.filter(ImageFilter.GaussianBlur(6)).save(buffer, "JPEG", quality=60)
    return buffer.getvalue()

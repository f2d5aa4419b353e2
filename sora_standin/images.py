"""Deterministic placeholder images made with Pillow.

The same prompt and variant index always give the same picture, so tests can compare bytes,
and different prompts look visibly different in a demo.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

Kind = Literal["png", "webp", "thumb"]

THUMBNAIL_WIDTH = 256


def output_size(width: int, height: int) -> tuple[int, int]:
    """Size of the real output: it follows the requested aspect, not the requested pixels."""
    if width > height:
        return 1536, 1024
    if height > width:
        return 1024, 1536
    return 1024, 1024


def _picture(prompt: str, index: int, size: tuple[int, int]) -> Image.Image:
    digest = hashlib.sha256(f"{prompt}\x00{index}".encode()).digest()
    width, height = size

    # Background: a gradient between two colours from the digest, in one of four directions.
    mask = Image.linear_gradient("L")
    mask = mask.rotate(90 * (digest[6] % 4)).resize(size, Image.Resampling.BILINEAR)
    start = Image.new("RGB", size, (digest[0], digest[1], digest[2]))
    end = Image.new("RGB", size, (digest[3], digest[4], digest[5]))
    picture = Image.composite(start, end, mask)

    # A few translucent shapes so variants of one prompt differ at a glance.
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for n in range(3 + digest[7] % 4):
        b = digest[8 + 4 * n : 12 + 4 * n]
        x, y = b[0] * width // 256, b[1] * height // 256
        radius = (60 + b[2] * 2) * width // 1024
        colour = (b[3], 255 - b[2], b[0], 110)
        box = (x - radius, y - radius, x + radius, y + radius)
        if b[3] % 2:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)

    # Caption with the prompt: makes a demo easy to follow.
    caption = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    font = ImageFont.load_default(size=max(14, width // 40))
    margin = width // 32
    draw.rectangle((0, height - 3 * margin, width, height), fill=(0, 0, 0, 120))
    draw.text(
        (margin, height - 1.5 * margin),
        f"{caption}  #{index}",
        font=font,
        fill=(255, 255, 255, 255),
        anchor="lm",
    )
    return Image.alpha_composite(picture.convert("RGBA"), overlay).convert("RGB")


@lru_cache(maxsize=16)
def _cached_picture(prompt: str, index: int, size: tuple[int, int]) -> Image.Image:
    return _picture(prompt, index, size)


@lru_cache(maxsize=96)
def render(prompt: str, index: int, size: tuple[int, int], kind: Kind) -> bytes:
    """Encoded bytes of one generation; cached, since a page and a driver fetch the same files."""
    picture = _cached_picture(prompt, index, size)
    buffer = io.BytesIO()
    if kind == "png":
        # Low compression: a full-size PNG must be ready in well under 100 ms.
        picture.save(buffer, "PNG", compress_level=1)
    elif kind == "webp":
        picture.save(buffer, "WEBP", quality=80, method=0)
    else:
        thumb_height = round(size[1] * THUMBNAIL_WIDTH / size[0])
        thumbnail = picture.resize((THUMBNAIL_WIDTH, thumb_height), Image.Resampling.LANCZOS)
        thumbnail.save(buffer, "WEBP", quality=75)
    return buffer.getvalue()

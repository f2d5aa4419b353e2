"""Fetching the image files, checking they really are the image, and storing them as PNG."""

from __future__ import annotations

import io
import urllib.request

from PIL import Image, UnidentifiedImageError

from sora_driver.errors import DownloadFailed


def fetch(url: str, user_agent: str, timeout: float) -> bytes:
    """The body of ``url``, fetched without the browser. Raises ``urllib.error.HTTPError`` on
    an error status, ``OSError`` or ``http.client.HTTPException`` when the transfer fails."""
    headers = {"Accept": "image/png,image/*;q=0.8"}
    if user_agent:
        headers["User-Agent"] = user_agent
    with urllib.request.urlopen(
        urllib.request.Request(url, headers=headers), timeout=timeout
    ) as answer:
        return bytes(answer.read())


def to_png(data: bytes, url: str) -> tuple[bytes, int, int, str]:
    """PNG bytes, width, height and the format the server sent."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            source_format, (width, height) = probe.format or "unknown", probe.size
            probe.verify()  # catches truncated files, which open() alone lets through
        if source_format == "PNG":  # verified to its last chunk: no need to decode it
            return data, width, height, source_format
        image: Image.Image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DownloadFailed(f"{url}: not a complete image ({len(data)} bytes): {exc}") from None
    out = io.BytesIO()
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA")
    image.save(out, format="PNG")
    return out.getvalue(), image.width, image.height, source_format

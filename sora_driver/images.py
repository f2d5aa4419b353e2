"""Fetching the image files, checking they really are the image, and storing them as PNG."""

from __future__ import annotations

import io
import time
import urllib.request
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from sora_driver.errors import DownloadFailed

CHUNK_BYTES = 256 * 1024


def fetch(url: str, user_agent: str, timeout: float) -> bytes:
    """The body of ``url``, fetched without the browser, in ``timeout`` seconds at most.

    Raises ``urllib.error.HTTPError`` on an error status, ``OSError`` (``TimeoutError``
    among them) or ``http.client.HTTPException`` when the transfer fails, ``ValueError``
    for a URL that is not http(s).
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("not an http(s) URL")
    deadline = time.monotonic() + timeout
    headers = {"Accept": "image/png,image/*;q=0.8"}
    if user_agent:
        headers["User-Agent"] = user_agent
    request = urllib.request.Request(url, headers=headers)
    chunks = []
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        while chunk := answer.read(CHUNK_BYTES):
            chunks.append(chunk)
            if time.monotonic() > deadline:  # the socket timeout is per read, not in all
                raise TimeoutError(f"still downloading after {timeout:g}s")
    return b"".join(chunks)


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

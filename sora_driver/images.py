"""Fetching the image files from the site's signed URLs, without the browser."""

from __future__ import annotations

import time
import urllib.request
from urllib.parse import urlsplit

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

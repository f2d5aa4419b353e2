"""The full-size images of a finished task, as PNG.

Fetched without the browser first: a signed URL's signature is all the credential it needs,
and the trip through the browser's driver costs several times as much. A host that refuses
a client without cookies is asked through the browser instead, for this image and every
later one until the browser's next start. A finished task's images start coming down as
soon as it is seen finished (``prefetch``), while the daemon sends its next prompt.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from functools import partial
from http.client import HTTPException
from urllib.parse import urlsplit

from loguru import logger
from playwright.sync_api import Error as PlaywrightError

from sora_driver.browser import WarmBrowser
from sora_driver.diagnostics import said, short_url
from sora_driver.site_page import SLICE_SECONDS
from sora_driver.sora_api import Picture, Task
from sora_watcher.backends.base import ImageFile, to_png
from sora_watcher.errors import DownloadFailed, Interrupted

CHUNK_BYTES = 256 * 1024
MAX_PREFETCHED = 12  # images downloaded ahead of their collect (3 tasks of 4 variants)


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


def in_background(call: Callable[[], bytes]) -> Future[bytes]:
    """``call`` run on a thread of its own: a daemon thread, so that a download under way
    never holds up the end of the process."""
    future: Future[bytes] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # handed over to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="download", daemon=True).start()
    return future


def as_png(data: bytes, picture: Picture, url: str) -> ImageFile:
    """The image as PNG; ``DownloadFailed`` if it is not one whole image of the task's size."""
    png, width, height, source_format = to_png(data, short_url(url))
    expected = (picture.width, picture.height)
    if picture.width is not None and picture.height is not None and (width, height) != expected:
        raise DownloadFailed(
            f"{short_url(url)}: got {width}x{height}, the generation is {expected[0]}x{expected[1]}"
        )
    return ImageFile(png, width, height, short_url(url), source_format)


class Downloads:
    def __init__(self, browser: WarmBrowser, timeout: float, stop: threading.Event) -> None:
        self.browser = browser
        self.timeout = timeout  # bound on one image
        self.stop = stop
        self.user_agent = ""  # the browser's, for the downloads made without it
        self.direct = True  # False: the image host refused a client without cookies
        # (task id, generation index) -> its download, started when the task was seen finished
        self._prefetched: dict[tuple[str, int], Future[bytes]] = {}

    def browser_started(self) -> None:
        """The image host is asked again without the browser after each start."""
        self.direct = True

    def prefetch(self, task: Task) -> None:
        """Start downloading a finished task's images at once, off the browser's thread. Only
        a head start: whatever goes wrong is dealt with when the images are collected."""
        if not self.direct:
            return
        try:
            for index, picture in enumerate(task.generations):
                key = (task.id, index)
                if picture.url is not None and key not in self._prefetched:  # (seen again)
                    while len(self._prefetched) >= MAX_PREFETCHED:  # of tasks never collected
                        del self._prefetched[next(iter(self._prefetched))]
                    self._prefetched[key] = self._start_fetch(picture.url)
        except RuntimeError as exc:  # no thread to be had: collect() downloads it
            logger.debug("no early download: {}", type(exc).__name__)

    def forget(self, task_id: str) -> None:
        """Early downloads of a task no longer wanted (variants not asked for, a failure)."""
        for key in [key for key in self._prefetched if key[0] == task_id]:
            del self._prefetched[key]

    def image(self, task_id: str, index: int, picture: Picture) -> ImageFile:
        url = picture.url
        if url is None:
            raise DownloadFailed(f"{task_id}: generation {index + 1} has no full-size URL")
        prefetched = self._prefetched.pop((task_id, index), None)
        refused = False
        if self.direct:
            try:
                return as_png(self._fetch_direct(url, prefetched), picture, url)
            except urllib.error.HTTPError as exc:
                refused = exc.code in (401, 403)  # it may want the browser's cookies
                logger.debug(
                    "{}: HTTP {} without the browser; through it", short_url(url), exc.code
                )
            except (OSError, HTTPException, ValueError, DownloadFailed) as exc:
                # (DownloadFailed: not the image, such as a page in its place.) The type only:
                # some of these errors quote the URL, whose signature is a credential.
                name = type(exc).__name__
                logger.debug("{}: {} without the browser; through it", short_url(url), name)
        image = as_png(self._fetch_through_browser(url), picture, url)
        if refused:  # and the browser was let in: through the browser until its next start
            self.direct = False
            logger.info(
                "{} refuses downloads outside the browser; downloading through the browser",
                urlsplit(url).netloc,
            )
        return image

    def _fetch_direct(self, url: str, prefetched: Future[bytes] | None) -> bytes:
        """Waited for in slices, so that a stop is not held up."""
        future = prefetched or self._start_fetch(url)
        deadline = time.monotonic() + self.timeout
        while not future.done():
            if self.stop.is_set():
                raise Interrupted()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no image after {self.timeout:g}s")
            wait_for_futures([future], timeout=SLICE_SECONDS)
        return future.result()

    def _start_fetch(self, url: str) -> Future[bytes]:
        return in_background(partial(fetch, url, self.user_agent, self.timeout))

    def _fetch_through_browser(self, url: str) -> bytes:
        try:
            response = self.browser.context.request.get(url)
            data = response.body()
        except PlaywrightError as exc:
            raise DownloadFailed(f"{short_url(url)}: {said(exc)}") from None
        if not response.ok:
            raise DownloadFailed(f"{short_url(url)}: HTTP {response.status}")
        return data

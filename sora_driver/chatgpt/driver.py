"""The ChatGPT web app driven in a real Chromium: the order of the steps.

``submit`` asks in a new conversation and returns its id as soon as the page shows it (the
journal writes it down: after a crash the same conversation is followed, not asked again).
``finished`` follows the conversations (``following``: it may ask again in the same
conversation, as a person would). ``collect`` downloads the full-size files of the finished
tool message, never a preview, and keeps nothing if the image is withdrawn meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from loguru import logger
from playwright.sync_api import Page

from sora_driver.browser import BrowserNotFound, BrowserOptions, WarmBrowser, release_freed_memory
from sora_driver.chatgpt import classify
from sora_driver.chatgpt.api import ChatApi
from sora_driver.chatgpt.chat_page import ChatPage
from sora_driver.chatgpt.classify import FULL_SIZE_SIDE, Images, Limited, Outcome, Pending
from sora_driver.chatgpt.conversation import IMAGE_HINT, Exchange, ImagePart, last_exchange, listed
from sora_driver.chatgpt.following import MAX_POLL_SECONDS, TEXT_ONLY_SECONDS, Follower
from sora_driver.chatgpt.pacing import Pacer, last_send_file
from sora_driver.chatgpt.settings import ChatGptSettings
from sora_driver.chatgpt.wording import FIRMLY, is_request_for, request_text
from sora_driver.diagnostics import Diagnostics, short_url
from sora_driver.errors import PageError, session_missing_message
from sora_driver.locate import Profile
from sora_driver.session import check_saved, site_of
from sora_watcher.backends.base import Generation, ImageFile, JobOptions, to_png
from sora_watcher.errors import DownloadFailed, GenerationError, GenerationTimeout

CHATGPT_PROFILE = Path(__file__).with_name("selectors.json")
CLOCK_SLACK_SECONDS = 30.0  # our clock and the site's may disagree a little
T = TypeVar("T")


class ChatGptDriver:
    def __init__(
        self,
        config: ChatGptSettings,
        timeout: float,
        stop: threading.Event,
        debug: bool = False,
        text_only_grace: float = TEXT_ONLY_SECONDS,
    ) -> None:
        self.config = config
        self.timeout = timeout  # bound on one generation's wait, from its send
        self.stop = stop
        self.pacer = Pacer(last_send_file(config.session_file))
        self.browser = WarmBrowser(
            config.session_file,
            BrowserOptions(
                config.browser_path, config.headless, config.page_timeout, config.recycle_after
            ),
        )
        self.diagnostics = Diagnostics(config.debug_dir, debug)
        self.profile = Profile(CHATGPT_PROFILE, config.selectors)
        self.site = ChatPage(
            config.url, self.browser, self.profile, self.diagnostics, stop, config.page_timeout
        )
        self.api = ChatApi(config.url)
        self.follower = Follower(self, timeout, stop, text_only_grace)

    @property
    def site_name(self) -> str:
        return site_of(self.config.url)

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        check_saved(self.config.session_file, session_missing_message(self.site_name))
        self.browser.start()
        body = self.api.session(self.site.current())
        logger.info("ChatGPT session valid (expires {})", body.get("expires", "?"))

    def close(self) -> None:
        self.site.forget()  # the page, and what was noted of it, go with the browser
        self.browser.close()

    def _page(self) -> Page:
        if not self.browser.connected:
            logger.warning("the browser is gone; launching a new one")
            self._relaunch()
        elif self.browser.recycle_due and not self.follower.followed:
            logger.info("restarting the browser after {} jobs", self.browser.jobs)
            self._relaunch()
            release_freed_memory()
        return self.site.current()

    def _relaunch(self) -> None:
        self.close()
        self.api.forget_token()
        try:
            self.open()
        except BrowserNotFound as exc:
            raise PageError(str(exc)) from None

    # -- the backend's calls ----------------------------------------------------------------

    def submit(self, prompt: str, options: JobOptions) -> str:
        text = request_text(self.config.prefix, prompt, options)

        def ask() -> str:
            self._page()
            conversation_id, tool = self.site.ask(text, self.pacer, self.config.min_interval)
            how = "the Create image tool" if tool else "words"
            logger.info("asked in conversation {} (with {})", conversation_id, how)
            self.follower.follow(conversation_id)
            return conversation_id

        return self._guarded(prompt, ask)

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        return self._guarded("conversations", lambda: self.follower.wait_for_done(task_ids, wait))

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        def wait_and_download() -> Generation:
            started = time.time()
            while not self.follower.wait_for_done([task_id], MAX_POLL_SECONDS):
                pass  # returns once it came to something, or past its deadline
            # What ended the wait, as the follower decided it (its adjustments included:
            # an image announced but late is a timeout, not an answer in text).
            followed = self.follower.followed.pop(task_id)
            found, exchange = followed.outcome, followed.exchange
            if not isinstance(found, Images) or exchange is None:  # None: never looked at
                raise self._error(task_id, found)
            waited = time.time()
            parts = found.parts[: options.variants]
            images = [self._image(task_id, part) for part in parts]
            self._check_not_withdrawn(task_id)
            self.browser.jobs += 1
            return Generation(
                task_id,
                images,
                {"wait": round(waited - started, 3), "download": round(time.time() - waited, 3)},
                {"chatgpt": details(exchange, parts)},
            )

        return self._guarded(task_id, wait_and_download)

    def find_task(self, prompt: str, since: float) -> str | None:
        def search() -> str | None:
            page = self._page()
            # the site lists them by their last update (ours was asked recently: near the top)
            for item in listed(self.api.conversations(page)):
                if item.created is not None and item.created < since - CLOCK_SLACK_SECONDS:
                    continue
                exchange = last_exchange(self.api.conversation(page, item.id), item.id)
                first = exchange.first_ask
                if first is not None and is_request_for(first.text, self.config.prefix, prompt):
                    self.follower.follow(item.id)
                    return item.id
            return None

        return self._guarded(prompt, search)

    # -- what the follower asks of the site (``following.Conversations``) --------------------

    def exchange(self, conversation_id: str) -> Exchange:
        body = self.api.conversation(self._page(), conversation_id)
        return last_exchange(body, conversation_id)

    def ask_again(self, conversation_id: str, text: str) -> None:
        self.site.ask(text, self.pacer, self.config.min_interval, conversation_id)

    def image_announced(self, conversation_id: str) -> bool:
        return self.site.image_announced(conversation_id)

    # -- errors and files -------------------------------------------------------------------

    def _error(self, task_id: str, found: Outcome) -> GenerationError:
        if isinstance(found, Limited):
            return classify.limit_error(found, time.time())
        if isinstance(found, classify.Failed):
            self.follower.reported.add(task_id)  # asked again when the core retries it
        error = classify.outcome_error(found, task_id)
        if error is not None:
            return error
        why = found.why if isinstance(found, Pending) else "nothing"
        return GenerationTimeout(f"conversation {task_id}: {why} after {self.timeout:g}s")

    def _image(self, task_id: str, part: ImagePart) -> ImageFile:
        data, url = self.api.image(self._page(), part.file_id, task_id)
        png, width, height, source_format = to_png(data, short_url(url))
        if max(width, height) < FULL_SIZE_SIDE:
            raise DownloadFailed(
                f"{part.file_id}: the file is {width}x{height}, a preview, not the full-size "
                "image yet; downloaded again later"
            )
        if part.width and part.height and (width, height) != (part.width, part.height):
            raise DownloadFailed(
                f"{part.file_id}: got {width}x{height}, the image is {part.width}x{part.height}"
            )
        return ImageFile(png, width, height, short_url(url), source_format)

    def _check_not_withdrawn(self, task_id: str) -> None:
        """Read again after the download: an image withdrawn meanwhile is not kept."""
        found = classify.outcome(self.exchange(task_id), FIRMLY)
        if isinstance(found, classify.Withdrawn):
            raise classify.ImageWithdrawn(f"conversation {task_id}: {found.words}")

    def _guarded(self, label: str, step: Callable[[], T]) -> T:
        return self.diagnostics.run(self.site, label, step)


def details(exchange: Exchange, parts: tuple[ImagePart, ...]) -> dict[str, object]:
    """What the sidecar says of the request and of what came (no token, no signed URL)."""
    first = exchange.first_ask
    tool = first is not None and IMAGE_HINT in first.hints
    return {
        "conversation_id": exchange.conversation_id,
        "asked": exchange.asked_text or None,
        "asked_with": "the Create image tool" if tool else "words",
        "images": [
            {
                "file_id": p.file_id,
                "width": p.width,
                "height": p.height,
                "size_bytes": p.size_bytes,
                "gen_id": p.gen_id,
            }
            for p in parts
        ],
    }

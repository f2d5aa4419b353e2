"""The ChatGPT web app driven in a real Chromium: the order of the steps.

``submit`` asks in a new conversation and returns its id as soon as the page shows it (the
journal writes it down: after a crash the same conversation is followed, not asked again).
``finished`` reads the conversation from the site until its last exchange comes to something
(``classify.outcome``); on the way it asks again in the same conversation when that is what a
person would do: after the plan's limit has reset, after a failed generation already
reported, and once more firmly after an answer in text alone. ``collect`` downloads the
full-size files of the finished tool message, never a preview.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from loguru import logger
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from sora_driver.browser import BrowserNotFound, BrowserOptions, WarmBrowser, release_freed_memory
from sora_driver.chatgpt import classify
from sora_driver.chatgpt.api import ChatApi
from sora_driver.chatgpt.chat_page import ChatPage
from sora_driver.chatgpt.classify import Images, Limited, Outcome, Pending, TextOnly
from sora_driver.chatgpt.conversation import IMAGE_HINT, Exchange, ImagePart, last_exchange, listed
from sora_driver.chatgpt.pacing import PACER, Pacer
from sora_driver.chatgpt.settings import ChatGptSettings
from sora_driver.diagnostics import Diagnostics, said, short_url
from sora_driver.errors import PageError, session_missing_message
from sora_driver.locate import Profile
from sora_driver.session import check_saved
from sora_watcher.backends.base import Generation, ImageFile, JobOptions, to_png
from sora_watcher.errors import (
    DownloadFailed,
    GenerationError,
    GenerationTimeout,
    Interrupted,
)

CHATGPT_PROFILE = Path(__file__).with_name("selectors.json")
FIRMLY = "Please create this image now with the image tool, as an image, not a description."
PORTRAIT, LANDSCAPE = ("2:3", "9:16"), ("3:2", "16:9")
SETTLE_SECONDS = 1.5  # an image seen finished may still be withdrawn: looked at again after
TEXT_ONLY_SECONDS = 3.0  # a text answer may yet be followed by the image's tool message
MIN_POLL_SECONDS, MAX_POLL_SECONDS = 1.0, 3.0  # peers poll every 3-5 s; sooner while young
CLOCK_SLACK_SECONDS = 30.0  # our clock and the site's may disagree a little
T = TypeVar("T")


def request_text(prefix: str, prompt: str, options: JobOptions) -> str:
    """What is sent: the lead-in, the prompt as given, and in words what the site has no
    control for (the shape, two images)."""
    wants = []
    if options.aspect_ratio in PORTRAIT:
        wants.append(f"portrait, {options.aspect_ratio}")
    elif options.aspect_ratio in LANDSCAPE:
        wants.append(f"landscape, {options.aspect_ratio}")
    if options.variants > 1:
        wants.append(f"{options.variants} images")
    text = f"{prefix} {prompt}".strip()
    return f"{text} ({'; '.join(wants)})" if wants else text


def is_request_for(text: str, prefix: str, prompt: str) -> bool:
    base = f"{prefix} {prompt}".strip()
    return text == base or text.startswith(base + " (")


@dataclass
class Followed:
    """A conversation we wait on: its deadline and what we have seen of it."""

    deadline: float  # time.monotonic()
    next_look: float = 0.0
    started: float = field(default_factory=time.monotonic)
    seen: dict[str, float] = field(default_factory=dict)  # outcome kind -> first seen at
    outcome: Outcome = field(default_factory=Pending)
    done: bool = False


class ChatGptDriver:
    def __init__(
        self,
        config: ChatGptSettings,
        timeout: float,
        stop: threading.Event,
        debug: bool = False,
        pacer: Pacer = PACER,
    ) -> None:
        self.config = config
        self.timeout = timeout  # bound on one generation's wait, from its send
        self.stop = stop
        self.pacer = pacer
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
        self.followed: dict[str, Followed] = {}
        self.reported: set[str] = set()  # conversations whose failure collect() raised

    @property
    def site_name(self) -> str:
        return urlsplit(self.config.url).netloc or self.config.url

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        check_saved(self.config.session_file, session_missing_message(self.site_name))
        self.browser.start()
        body = self.api.session(self.site.current())
        logger.info("ChatGPT session valid (expires {})", body.get("expires", "?"))

    def close(self) -> None:
        self.browser.close()
        self.site.page = None

    def _page(self) -> Page:
        if not self.browser.connected:
            logger.warning("the browser is gone; launching a new one")
            self._relaunch()
        elif self.browser.recycle_due and not self.followed:
            logger.info("restarting the browser after {} jobs", self.browser.jobs)
            self._relaunch()
            release_freed_memory()
        return self.site.current()

    def _relaunch(self) -> None:
        self.site.forget()
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
            self._follow(conversation_id)
            return conversation_id

        return self._guarded(prompt, ask)

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        return self._guarded("conversations", lambda: self._wait_for_done(task_ids, wait))

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        def wait_and_download() -> Generation:
            started = time.time()
            while not self._wait_for_done([task_id], MAX_POLL_SECONDS):
                pass  # returns once it came to something, or past its deadline
            followed = self.followed.pop(task_id)
            exchange = self._exchange(task_id)  # afresh: a withdrawal shows here
            found = classify.outcome(exchange, FIRMLY)
            if isinstance(found, Pending):  # what made it done may have changed since
                found = followed.outcome if not isinstance(followed.outcome, Images) else found
            if not isinstance(found, Images):
                raise self._error(task_id, found)
            waited = time.time()
            images = [self._image(task_id, part) for part in found.parts[: options.variants]]
            self.browser.jobs += 1
            return Generation(
                task_id,
                images,
                {"wait": round(waited - started, 3), "download": round(time.time() - waited, 3)},
                {"chatgpt": details(exchange, found.parts[: options.variants])},
            )

        return self._guarded(task_id, wait_and_download)

    def find_task(self, prompt: str, since: float) -> str | None:
        def search() -> str | None:
            page = self._page()
            for item in listed(self.api.conversations(page)):  # newest first
                if item.created is not None and item.created < since - CLOCK_SLACK_SECONDS:
                    continue
                exchange = last_exchange(self.api.conversation(page, item.id), item.id)
                first = exchange.first_ask
                if first is not None and is_request_for(first.text, self.config.prefix, prompt):
                    self._follow(item.id)
                    return item.id
            return None

        return self._guarded(prompt, search)

    # -- following --------------------------------------------------------------------------

    def _follow(self, conversation_id: str) -> Followed:
        followed = Followed(time.monotonic() + self.timeout)
        self.followed[conversation_id] = followed
        return followed

    def _exchange(self, conversation_id: str) -> Exchange:
        body = self.api.conversation(self._page(), conversation_id)
        return last_exchange(body, conversation_id)

    def _wait_for_done(self, task_ids: list[str], wait: float) -> list[str]:
        until = time.monotonic() + wait
        while True:
            for task_id in task_ids:
                followed = self.followed.get(task_id) or self._follow(task_id)
                if not followed.done and time.monotonic() >= followed.next_look:
                    self._look(task_id, followed)
            done = [t for t in task_ids if self.followed[t].done]
            now = time.monotonic()
            if done or now >= until:
                return done
            next_look = min(self.followed[t].next_look for t in task_ids)
            if self.stop.wait(max(min(next_look, until) - now, 0.01)):
                raise Interrupted()

    def _look(self, task_id: str, followed: Followed) -> None:
        """Read the conversation; mark it done, or ask again, or wait on."""
        exchange = self._exchange(task_id)
        found = classify.outcome(exchange, FIRMLY)
        now = time.monotonic()
        first_seen = followed.seen.setdefault(type(found).__name__, now)
        followed.outcome = found
        age = now - followed.started
        followed.next_look = now + min(max(0.1 * age, MIN_POLL_SECONDS), MAX_POLL_SECONDS)
        if isinstance(found, Pending):
            followed.done = now >= followed.deadline
        elif isinstance(found, Images):
            followed.done = now - first_seen >= SETTLE_SECONDS
            followed.next_look = min(followed.next_look, first_seen + SETTLE_SECONDS)
        elif isinstance(found, TextOnly) and not found.asked_firmly:
            if now - first_seen >= TEXT_ONLY_SECONDS:
                logger.info("{}: an answer in text, no image; asking once more", task_id)
                self._ask_again(task_id, exchange, f"{FIRMLY} {_first_text(exchange)}")
            else:
                followed.next_look = min(followed.next_look, first_seen + TEXT_ONLY_SECONDS)
        elif isinstance(found, Limited) and _limit_over(found):
            logger.info("{}: the limit has reset; asking again", task_id)
            self._ask_again(task_id, exchange, _asked_text(exchange))
        elif isinstance(found, classify.Failed) and task_id in self.reported:
            logger.info("{}: the image generation failed before; asking again", task_id)
            self.reported.discard(task_id)
            self._ask_again(task_id, exchange, _asked_text(exchange))
        else:
            followed.done = True

    def _ask_again(self, task_id: str, exchange: Exchange, text: str) -> None:
        """In the same conversation: its id, in the journal, stays the task's."""
        self.site.ask(text, self.pacer, self.config.min_interval, task_id)
        self._follow(task_id)

    def _error(self, task_id: str, found: Outcome) -> GenerationError:
        if isinstance(found, Limited):
            return classify.limit_error(found, time.time())
        if isinstance(found, classify.Failed):
            self.reported.add(task_id)  # asked again when the core retries it
        error = classify.outcome_error(found, task_id)
        if error is not None:
            return error
        why = found.why if isinstance(found, Pending) else "nothing"
        return GenerationTimeout(f"conversation {task_id}: {why} after {self.timeout:g}s")

    def _image(self, task_id: str, part: ImagePart) -> ImageFile:
        data, url = self.api.image(self._page(), part.file_id, task_id)
        png, width, height, source_format = to_png(data, short_url(url))
        if part.width and part.height and (width, height) != (part.width, part.height):
            raise DownloadFailed(
                f"{part.file_id}: got {width}x{height}, the image is {part.width}x{part.height}"
            )
        return ImageFile(png, width, height, short_url(url), source_format)

    def _guarded(self, label: str, step: Callable[[], T]) -> T:
        """Run a step; on failure keep a capture of the page and start the next one afresh."""
        try:
            return step()
        except Interrupted:
            self.site.forget()
            raise
        except PlaywrightError as exc:
            error: GenerationError = PageError(f"browser: {said(exc)}")
        except GenerationError as exc:
            error = exc
        if isinstance(error, PageError):
            self.site.check_stop()  # a browser gone because we are stopping: not a failure
        self.diagnostics.capture(self.site.page, label, error)
        self.site.forget()
        raise error


def _asked_text(exchange: Exchange) -> str:
    return exchange.asked.text if exchange.asked is not None else ""


def _first_text(exchange: Exchange) -> str:
    return exchange.first_ask.text if exchange.first_ask is not None else ""


def _limit_over(limited: Limited) -> bool:
    """Whether the stated reset has passed (a limit that stated none: after a while)."""
    reset_at = limited.reset_at
    return reset_at is not None and time.time() >= reset_at + classify.RESET_SLACK_SECONDS


def details(exchange: Exchange, parts: tuple[ImagePart, ...]) -> dict[str, object]:
    """What the sidecar says of the request and of what came (no token, no signed URL)."""
    first = exchange.first_ask
    tool = first is not None and IMAGE_HINT in first.hints
    return {
        "conversation_id": exchange.conversation_id,
        "asked": exchange.asked.text if exchange.asked is not None else None,
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

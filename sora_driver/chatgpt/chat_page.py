"""The ChatGPT page as a person uses it: a new conversation (or an existing one), the "Create
image" tool when the page offers it, the text put into the composer, then Send.

The page's own script sends the request, with the headers the site computes (its sentinel
tokens): we never call the conversation endpoint ourselves. What it answered is noted from
the page's traffic: its status (a 401 reloads the page once, as the page refreshes its own
token on load), and once its stream is complete whether it announced an image
(``image_announced``); the conversation id is in the page's address (``/c/<id>``) as soon as
the answer's stream gives it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from loguru import logger
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, Request, Response
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from sora_driver.browser import WarmBrowser
from sora_driver.chatgpt.classify import IMAGE_MARKERS, http_error
from sora_driver.chatgpt.pacing import Pacer
from sora_driver.classify import check_page_state
from sora_driver.diagnostics import Diagnostics, said, short_url
from sora_driver.errors import ElementNotFound, PageError, SessionExpired
from sora_driver.locate import Profile
from sora_watcher.errors import Interrupted

SEND_PATHS = ("/backend-api/f/conversation", "/backend-api/conversation")
SENTINEL_PATH = "/backend-api/sentinel/chat-requirements"  # the page asks it before a send
CONVERSATION_URL = re.compile(r"/c/(?P<id>[0-9A-Za-z-]{8,})")
LOGIN_MARKERS = ("/auth/login", "/log-in", "auth.openai.com")
SLICE_SECONDS = 0.25  # longest time between two looks at the stop flag
BUTTON_WAIT_MS = 3000  # the composer is there: the rest of the form is, or is not
CLICK_TIMEOUT_MS = 10000
STREAM_MARKERS = re.compile(
    "|".join([*IMAGE_MARKERS, r'"async_task_type"\s*:\s*"image_gen"'])
)  # in an answer's stream: an image is coming, the stream ends before it exists
KEPT_STREAMS = 8  # finished sends remembered (one is asked at a time)
T = TypeVar("T")


def is_send(request: Request) -> bool:
    return request.method == "POST" and urlsplit(request.url).path.rstrip("/") in SEND_PATHS


def refuses_send(response: Response) -> bool:
    """The page's sentinel call was refused for good: its script shows an alert and sends
    nothing (a 401 it answers itself, reading the session again and retrying once)."""
    request = response.request
    path = urlsplit(request.url).path.rstrip("/")
    return (
        request.method == "POST"
        and path == SENTINEL_PATH
        and response.status >= 400
        and response.status != 401
    )


def flat(text: str) -> str:
    return " ".join(text.split())


class ChatPage:
    def __init__(
        self,
        base_url: str,
        browser: WarmBrowser,
        profile: Profile,
        diagnostics: Diagnostics,
        stop: threading.Event,
        page_timeout: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.browser = browser
        self.profile = profile
        self.diagnostics = diagnostics
        self.stop = stop
        self.page_timeout = page_timeout
        self.page: Page | None = None
        self._sends: list[Response] = []  # the page's conversation POSTs, as answered
        self._finished: list[Request] = []  # those whose stream is complete
        self._answers: dict[str, Response] = {}  # conversation id -> its last send's answer
        self._announced: dict[str, bool] = {}  # conversation id -> its complete stream said so

    # -- the page ---------------------------------------------------------------------------

    def current(self) -> Page:
        """The site's page as it is (loaded now if there is none)."""
        if self.page is None or self.page.is_closed():
            return self.goto("/")
        return self.page

    def goto(self, path: str) -> Page:
        if self.page is None or self.page.is_closed():
            self.page = self.browser.context.new_page()
            self.page.on("response", self._on_response)
            self.page.on("requestfinished", self._on_finished)
        page = self.page
        self.diagnostics.step(page, "open")
        try:
            page.goto(self.base_url + path, wait_until="domcontentloaded")
        except PlaywrightError as exc:
            self.forget()
            raise PageError(f"could not load {self.base_url}{path}: {said(exc)}") from None
        check_page_state(page, LOGIN_MARKERS)
        return page

    def forget(self) -> None:
        """After a failure, or with the browser gone: a new page next time."""
        if self.page is not None:
            with contextlib.suppress(PlaywrightError):
                self.page.close()
        self.page = None
        self._answers.clear()
        self._announced.clear()
        self._finished.clear()

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted()

    def _on_response(self, response: Response) -> None:
        # On Playwright's dispatcher: only note it; its body is read on the driver's thread.
        if is_send(response.request) or refuses_send(response):
            self._sends.append(response)

    def _on_finished(self, request: Request) -> None:
        if is_send(request):
            self._finished = [*self._finished[-KEPT_STREAMS + 1 :], request]

    def image_announced(self, conversation_id: str) -> bool:
        """Whether the last answer in this conversation, its stream complete, carried the
        markers of an image to come (False while the stream goes on, or when unknown).
        Read once: a complete stream no longer changes."""
        if conversation_id in self._announced:
            return self._announced[conversation_id]
        answer = self._answers.get(conversation_id)
        if answer is None or not any(r is answer.request for r in self._finished):
            return False
        try:
            body = answer.text()  # complete: read at once
        except PlaywrightError:
            return False
        announced = self._announced[conversation_id] = STREAM_MARKERS.search(body) is not None
        return announced

    # -- asking -----------------------------------------------------------------------------

    def ask(
        self, text: str, pacer: Pacer, interval: float, conversation_id: str | None = None
    ) -> tuple[str, bool]:
        """Send ``text`` in a new conversation (or in ``conversation_id``); the conversation
        id and whether the "Create image" tool was used. Waits its turn (``pacer``) just
        before sending."""
        path = "/" if conversation_id is None else f"/c/{conversation_id}"
        for last_try in (False, True):
            page = self.goto(path)
            tool, answer = self._send(page, text, pacer, interval, conversation_id is None)
            if answer.status != 401 or last_try:
                break
            # The session cookie may still be good: the page fetches a new token as it loads.
            logger.info("the site refused the page's token (HTTP 401); reloading the page once")
        self._check_answer(answer)
        asked = conversation_id or self._wait(
            page, lambda: self._conversation_id(page), "no conversation id"
        )
        self._answers[asked] = answer
        self._announced.pop(asked, None)  # a new answer: its stream is read afresh
        return asked, tool

    def _send(
        self, page: Page, text: str, pacer: Pacer, interval: float, new: bool
    ) -> tuple[bool, Response]:
        """Type and send; whether with the Create image tool, and the page's POST answer."""
        composer = self._composer(page)
        self.profile.dismiss_popups(page, CLICK_TIMEOUT_MS)
        tool = new and self._choose_image_tool(page)
        tool = self._insert(page, composer, text, tool)
        self.diagnostics.step(page, "typed")
        button = self._send_button(page)
        pacer.wait_turn(interval, self.stop)
        self._sends.clear()
        pacer.sent()  # from the click on: a click that fails may still have sent
        if button is None:
            logger.debug("no send button found; pressing Enter in the composer")
            composer.press("Enter")
        else:
            button.click(timeout=CLICK_TIMEOUT_MS)
        self.diagnostics.step(page, "sent")
        answer = self._wait(page, lambda: self._sends[-1] if self._sends else None, "no request")
        return tool, answer

    def _composer(self, page: Page) -> Locator:
        """The composer; if there is none, why: logged out, blocked, or the page changed."""
        try:
            return self.profile.find(page, "composer", self.page_timeout * 1000)
        except ElementNotFound:
            if self.profile.visible_now(page, "login_button") is not None:
                raise SessionExpired(
                    f"the site shows its log-in button ({short_url(page.url)}): logged out"
                ) from None
            check_page_state(page, LOGIN_MARKERS)
            raise

    def _choose_image_tool(self, page: Page) -> bool:
        """The "+" menu's "Create image", when the page offers it (else the words ask)."""
        plus = self.profile.visible_now(page, "plus_button")
        if plus is None:
            return False
        plus.click(timeout=CLICK_TIMEOUT_MS)
        try:
            self.profile.find(page, "create_image", BUTTON_WAIT_MS).click(timeout=CLICK_TIMEOUT_MS)
            self.profile.find(page, "image_pill", BUTTON_WAIT_MS)
        except ElementNotFound as exc:
            logger.warning("no Create image tool ({}); asking in words", exc.detail)
            page.keyboard.press("Escape")
            return False
        return True

    def _insert(self, page: Page, composer: Locator, text: str, tool: bool) -> bool:
        """Insert the text as typing would (a ProseMirror editor ignores ``fill``), then read
        the editor back: once more from empty if it did not take it. Whether the "Create
        image" pill is still there (clearing the editor may take it too: then words ask)."""
        for last_try in (False, True):
            composer.click(timeout=CLICK_TIMEOUT_MS)
            if last_try:
                page.keyboard.press("ControlOrMeta+a")
                page.keyboard.press("Delete")
            page.keyboard.insert_text(text)
            shown = flat(str(composer.evaluate(
                "e => e.tagName === 'TEXTAREA' ? e.value : e.innerText"
            )))  # fmt: skip
            if flat(text) in shown:
                return tool and (not last_try or self._pill_kept(page))
            logger.debug("the composer shows {} characters, not the prompt; again", len(shown))
        raise PageError("the composer did not take the prompt (its text differs after typing)")

    def _pill_kept(self, page: Page) -> bool:
        if self.profile.visible_now(page, "image_pill") is not None:
            return True
        logger.warning("clearing the composer removed the Create image pill; asking in words")
        return False

    def _send_button(self, page: Page) -> Locator | None:
        try:
            return self.profile.find(page, "send_button", BUTTON_WAIT_MS)
        except ElementNotFound as exc:
            logger.warning("{}", exc.detail)
            return None

    def _check_answer(self, answer: Response) -> None:
        """The page's POST answered: an error status is what it says."""
        if answer.ok:
            return
        try:
            body = answer.text()
        except PlaywrightError:
            body = ""
        raise http_error(answer.status, body, f"POST {urlsplit(answer.url).path}")

    def _conversation_id(self, page: Page) -> str | None:
        found = CONVERSATION_URL.search(urlsplit(page.url).path)
        return found["id"] if found else None

    def _wait(self, page: Page, ready: Callable[[], T | None], missing: str) -> T:
        deadline = time.monotonic() + self.page_timeout
        while (value := ready()) is None:
            self.check_stop()
            left = deadline - time.monotonic()
            if left <= 0:
                raise PageError(f"sent from {short_url(page.url)}, but {missing} after "
                                f"{self.page_timeout:g}s")  # fmt: skip
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_event("framenavigated", timeout=min(SLICE_SECONDS, left) * 1000)
        return value

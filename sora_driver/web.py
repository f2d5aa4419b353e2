"""The Sora web app driven in a real Chromium, as a user would drive it.

The prompt is typed into the composer and the create button is clicked, so the page's own
JavaScript sends the request (with the headers the site expects). The end of a generation is
read from the task list: from the page's own polling of it on the network, and from looks of
our own when a task may be about to finish (the page polls at its own pace, which could add
most of a second to each image); a task the list does not show is fetched by its id. The
final image is downloaded from the generation's full-size URL, never from the thumbnail shown
in the grid.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import json
import math
import threading
import time
import urllib.error
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from http.client import HTTPException
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

from loguru import logger
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    Request,
    Response,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from sora_driver import locate
from sora_driver.browser import BrowserNotFound, find_browser, launch_args, running_as_root
from sora_driver.classify import api_error, blocked_by, finished_task_error
from sora_driver.errors import ElementNotFound, PageError, SessionExpired, SessionMissing
from sora_driver.images import fetch
from sora_watcher.backends.base import Generation, ImageFile, JobOptions, to_png
from sora_watcher.errors import (
    ContentRejected,
    DownloadFailed,
    GenerationError,
    GenerationTimeout,
    Interrupted,
    PermanentError,
    RateLimited,
    TransientError,
)

# The pixel sizes Sora makes for each aspect ratio.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (480, 480),
    "3:2": (720, 480),
    "2:3": (480, 720),
    "16:9": (854, 480),
    "9:16": (480, 854),
}
FINISHED = {"succeeded", "failed", "cancelled"}
SLICE_SECONDS = 0.5  # longest time between two looks at the stop flag
QUIET_POLL_SECONDS = 5.0  # with no news of a task for this long, ask the backend for it by id
TASK_LIST = "/backend/v2/list_tasks?limit=20"
# Looks of our own at the task list. Each task is first looked for a little before it has run
# as long as the quickest quarter of the last generations, then 25 ms after each answer for
# 0.15 s (its end is near), then every 5 % of its age (0.1 s to 2 s): a finished task is seen
# within a few per cent of its own duration. One look covers every task in flight; a task
# that ends on time costs two to four, one that runs 50 % late about ten more, one before
# any generation was seen about 75 (30 s long). A duration is counted up to the look that saw
# the task finished, and the first look comes before the expected end, so that the estimate
# can go down as well as up. (One that ends sooner is still seen by the page's own polling.)
LOOK_EARLY_SECONDS = 0.05
QUICK_LOOK_SECONDS = 0.025
QUICK_LOOKS_FOR_SECONDS = 0.15
LOOK_SHARE = 0.05
MIN_LOOK_SECONDS = 0.1
MAX_LOOK_SECONDS = 2.0
RECENT_GENERATIONS = 20
MAX_PREFETCHED = 12  # images downloaded ahead of their collect (3 tasks of 4 variants)
MIN_WAIT_SECONDS = 0.01  # a Playwright timeout of 0 would mean no timeout at all
LOGIN_MARKERS = ("/login", "/auth/", "auth.openai.com")
MAX_UNREAD_NEWS = 50
BUTTON_WAIT_MS = 3000  # the composer is there: the rest of the form is, or is not
# The composer found before on the same page is filled at once; if it does not take the
# prompt within this time, the page has changed and it is looked for afresh.
KNOWN_ELEMENT_MS = 1000
CLICK_TIMEOUT_MS = 10000
RESEND_GRACE_SECONDS = 2.0
CLOCK_SLACK_SECONDS = 30.0  # our clock and the site's may disagree a little
T = TypeVar("T")


@dataclass(frozen=True)
class DriverConfig:
    base_url: str
    session_file: Path
    timeout: float = 60.0  # bound on one generation's wait
    page_timeout: float = 30.0  # bound on a page load, an element, a download
    headless: bool = True
    browser_path: str | None = None
    selectors_file: Path | None = None
    debug: bool = False
    artifacts_dir: Path = Path("debug_screenshots")
    recycle_after: int = 50  # jobs per browser (restarted after that many); 0: never


def _path(url: str) -> str:
    return urlsplit(url).path.rstrip("/")


@dataclass
class Followed:
    """A task we wait for: its deadline and the newest state we have seen of it."""

    started: float  # time.monotonic() of its submission (or of the restart that found it)
    deadline: float  # time.monotonic() after which it counts as timed out
    news_at: float  # when we last heard of it
    task: dict[str, Any] = field(default_factory=dict)
    error: GenerationError | None = None  # asking for it failed: collect() raises this
    looked_at: float = -math.inf  # time.monotonic() of our last own look at the task list
    timed: bool = True  # we saw it start: its duration tells how long generations take


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


def _full_size_url(origin: str, generation: Any) -> str | None:
    """A generation's full-size image: its ``url``, or else ``encodings.source.path``."""
    if not isinstance(generation, dict):
        return None
    encodings = generation.get("encodings")
    source = encodings.get("source") if isinstance(encodings, dict) else None
    url = generation.get("url") or (source.get("path") if isinstance(source, dict) else None)
    return urljoin(origin + "/", str(url)) if url else None


def look_due(followed: Followed, expected: float) -> float:
    """When a task wants a look of our own: a little before it has run ``expected`` seconds,
    then often while its end is near, then every ``LOOK_SHARE`` of its age (from the start,
    before any generation was seen: ``expected`` 0)."""
    if expected > 0:
        first = followed.started + expected - LOOK_EARLY_SECONDS
        if followed.looked_at < first:
            return first
        if followed.looked_at < first + QUICK_LOOKS_FOR_SECONDS:
            return followed.looked_at + QUICK_LOOK_SECONDS
    age = followed.looked_at - followed.started
    return followed.looked_at + min(max(LOOK_SHARE * age, MIN_LOOK_SECONDS), MAX_LOOK_SECONDS)


def _is_submit(request: Request) -> bool:
    return request.method == "POST" and _path(request.url).endswith("/backend/video_gen")


def _is_task_news(request: Request) -> bool:
    path = _path(request.url)
    return request.method == "GET" and (
        path.endswith("/backend/v2/list_tasks") or "/backend/video_gen" in path
    )


def _tasks_in(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("task_responses"), list):
        return [t for t in body["task_responses"] if isinstance(t, dict)]
    if isinstance(body, dict) and "id" in body and "status" in body:
        return [body]
    return []


def _said(exc: PlaywrightError) -> str:
    """Playwright's own first line. Its "Call log" that follows repeats the request headers,
    cookies included, so it never goes further than this."""
    lines = exc.message.split("Call log:")[0].strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def release_freed_memory() -> None:
    """Hand the heap freed with the old browser's objects back to the system. Python's
    allocator keeps it otherwise, and the daemon's RSS creeps up over weeks of restarts."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reason(exc: Exception) -> str:
    if isinstance(exc, GenerationError):
        return f"{exc.name}: {exc.detail}"
    if isinstance(exc, PlaywrightError):
        return _said(exc)
    return f"{type(exc).__name__}: {exc}"


def _timestamp(value: Any) -> float:
    """A task's ``created_at`` (ISO 8601 or Unix seconds) as Unix seconds; 0 if unreadable."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _short(url: str) -> str:
    """A URL without its query: signed URLs carry credentials that have no place in a log."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class SoraWebDriver:
    """One warm browser for the life of the daemon; ``generate`` is called once per prompt."""

    def __init__(self, config: DriverConfig, stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.selectors = locate.load_profile(config.selectors_file)
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._origin = config.base_url.rstrip("/")
        # Requests whose answer arrived in full. Only those: Playwright waits forever for the
        # body of an answer the page never finished reading.
        self._submits: list[Request] = []
        self._task_news: list[Request] = []
        self._submitted_at: dict[str, float] = {}
        self._following: dict[str, Followed] = {}
        self._jobs_in_browser = 0
        self._token: str | None = None  # the session's bearer token, asked for once per context
        self._looks_resume_at = 0.0  # time.monotonic(); after a failed look, a pause
        self._recent: deque[float] = deque(maxlen=RECENT_GENERATIONS)  # seconds, succeeded
        self._options_on_page: JobOptions | None = None  # last chosen in the settings menu
        # The composer and the create button found on the current page (None: no button,
        # Enter submits), so that each prompt does not look for them again.
        self._found: dict[str, Locator | None] = {}
        self._direct_downloads = True  # False: the image host refused a client without cookies
        # (task id, generation index) -> its download, started when the task was seen finished
        self._prefetched: dict[tuple[str, int], Future[bytes]] = {}
        self._user_agent = ""  # the browser's, for the downloads made without it
        self._clicked_at = 0.0
        self._submit_sent = False  # the page sent its POST since our click (maybe unanswered)
        self._step = 0

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Launch the browser with the saved session and check the site accepts it."""
        if not self.config.session_file.is_file():
            raise SessionMissing()
        if self.config.session_file.stat().st_mode & 0o077:
            logger.warning(
                "{} can be read by other users of this machine: chmod 600 it",
                self.config.session_file,
            )
        try:
            json.loads(self.config.session_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # half copied, or not a session at all
            detail = f"{self.config.session_file} is not a saved session: {exc}"
            raise SessionExpired(detail) from None
        executable = find_browser(self.config.browser_path)
        logger.debug("launching {} (headless={})", executable, self.config.headless)
        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(
                executable_path=str(executable),
                headless=self.config.headless,
                args=launch_args(),
                chromium_sandbox=not running_as_root(),
            )
            self._new_context()
        except PlaywrightError as exc:
            raise PageError(f"the browser did not start: {_said(exc)}") from None
        self._jobs_in_browser = 0
        self._direct_downloads = True  # the image host is asked again after each start
        self.check_session()

    def close(self) -> None:
        for closer in (self._context, self._browser):
            if closer is not None:
                # Already gone is fine: closing is all we wanted.
                with contextlib.suppress(PlaywrightError):
                    closer.close()
        if self._pw is not None:
            with contextlib.suppress(PlaywrightError):
                self._pw.stop()
        self._pw = self._browser = self._context = self._page = None

    def _new_context(self) -> None:
        assert self._browser is not None
        self._context = self._browser.new_context(
            storage_state=str(self.config.session_file), accept_downloads=True
        )
        self._context.set_default_timeout(self.config.page_timeout * 1000)
        self._page = None
        self._token = None

    def _recycle_if_due(self) -> None:
        """A new browser every ``recycle_after`` jobs keeps memory flat over weeks.

        The whole of it: a fresh context alone left Playwright's own driver process growing
        (about 9 MB per 100 jobs). Done when following tasks if any are in flight, since
        they go on running on the site while the browser starts (about 2 s); else before
        the next submission.
        """
        due = self.config.recycle_after and self._jobs_in_browser >= self.config.recycle_after
        if due:
            logger.info("restarting the browser after {} jobs", self._jobs_in_browser)
            self._relaunch()
            release_freed_memory()

    def _ensure_browser(self) -> None:
        if self._browser is None or not self._browser.is_connected():
            logger.warning("the browser is gone; launching a new one")
            self._relaunch()
        elif self._context is None:  # a start that failed half-way
            self._new_context()

    def _relaunch(self) -> None:
        """Close what is left of the browser and launch a new one. Tasks in flight live on
        the site, not in the browser: they are followed on from the new page, deadlines kept.
        """
        self._forget_page()
        self.close()
        try:
            self.open()
        except BrowserNotFound as exc:  # removed under a running daemon: say so, retry later
            raise PageError(str(exc)) from None

    # -- session ----------------------------------------------------------------------------

    def _session_answer(self) -> dict[str, Any]:
        assert self._context is not None
        url = urljoin(self._origin + "/", "api/auth/session")
        try:
            response = self._context.request.get(url)
            text = response.text()
        except PlaywrightError as exc:
            raise PageError(f"GET {url} failed: {_said(exc)}") from None
        blocked = blocked_by(text, f"GET {url}")
        if blocked is not None:
            raise blocked
        if not response.ok:
            raise api_error(response.status, text, "/api/auth/session")
        try:
            body = json.loads(text)
        except ValueError:
            raise PageError(f"GET {url}: not JSON ({text[:80]!r})") from None
        if not isinstance(body, dict) or not body.get("user"):
            raise SessionExpired(
                f"GET {url} answered {text.strip()[:20]!r}: the saved session is no longer "
                "valid; log in again and save a new session.json"
            )
        return body

    def _confirmed(self, error: GenerationError) -> GenerationError:
        """A 401 may only mean the page's bearer token went stale: the page derives a new
        one from the session cookie when it loads. Only a session the site no longer knows
        stops the queue; a stale token is a transient error, and the page is reloaded."""
        if isinstance(error, SessionExpired):
            self._session_answer()  # raises SessionExpired if the session itself is gone
            return PageError(f"{error.detail}; the session is still valid: reloading the page")
        return error

    def check_session(self) -> None:
        body = self._session_answer()
        logger.info("Sora session valid (expires {})", body.get("expires", "?"))

    # -- one generation: submit, then collect ----------------------------------------------

    def submit(self, prompt: str, options: JobOptions) -> str:
        def through_the_page() -> str:
            self._ensure_browser()
            self._recycle_if_due()
            task_id = self._submit(self._composer_page(), prompt, options)
            self._submitted_at[task_id] = time.time()
            return task_id

        return self._guarded(prompt, through_the_page)

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        def follow() -> list[str]:
            self._ensure_browser()
            self._recycle_if_due()  # best while tasks are in flight: they go on meanwhile
            return self._finished(task_ids, wait)

        return self._guarded("tasks", follow)

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        def wait_and_download() -> Generation:
            started = time.time()
            while not self._finished([task_id], SLICE_SECONDS):
                pass  # _finished returns the task once it is done or past its deadline
            followed = self._following.pop(task_id)
            if followed.error is not None:
                raise followed.error
            task = followed.task
            if task.get("status") not in FINISHED:
                raise GenerationTimeout(
                    f"task {task_id} still {task.get('status') or 'unseen'} "
                    f"after {self.config.timeout:g}s"
                )
            finished_error = finished_task_error(task)
            if finished_error is not None:
                raise finished_error
            waited = time.time()
            wanted = task["generations"][: options.variants]
            images = [self._download(task_id, i, g) for i, g in enumerate(wanted)]
            self._jobs_in_browser += 1
            return Generation(
                task_id,
                images,
                {"wait": round(waited - started, 3), "download": round(time.time() - waited, 3)},
            )

        try:
            return self._guarded(task_id, wait_and_download)
        finally:
            for key in [key for key in self._prefetched if key[0] == task_id]:
                del self._prefetched[key]  # variants not asked for, or a collect that failed

    def find_task(self, prompt: str, since: float) -> str | None:
        def look_in_the_task_list() -> str | None:
            self._ensure_browser()
            listing = self._api_get(TASK_LIST)
            for task in _tasks_in(listing):  # newest first
                created = _timestamp(task.get("created_at"))
                if task.get("prompt") == prompt and created >= since - CLOCK_SLACK_SECONDS:
                    return str(task["id"])
            return None

        return self._guarded(prompt, look_in_the_task_list)

    def _guarded(self, label: str, step: Callable[[], T]) -> T:
        """Run a step; on failure keep a capture of the page and start the next one afresh."""
        try:
            return step()
        except (GenerationError, Interrupted) as exc:
            if isinstance(exc, GenerationError):
                self._save_artifacts(label, exc)
            self._page_needs_reload()
            raise
        except PlaywrightError as exc:
            # Ctrl-C in a terminal reaches Chromium too: a browser that died because we are
            # stopping is an interruption, not a failure to retry.
            self._check_stop()
            error = PageError(f"browser: {_said(exc)}")
            self._save_artifacts(label, error)
            self._page_needs_reload()
            raise error from None
        except (ValueError, KeyError, TypeError) as exc:
            # An answer of an unexpected shape (HTML where JSON was due, a key gone): the site
            # changed or had a hiccup; worth another try, and the detail says what it was.
            error = PageError(f"unexpected answer: {type(exc).__name__}: {exc}")
            self._save_artifacts(label, error)
            self._page_needs_reload()
            raise error from None

    def _composer_page(self) -> Page:
        if self._page is not None and not self._page.is_closed():
            return self._page
        assert self._context is not None
        page = self._context.new_page()
        self._found.clear()  # they were the old page's
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_finished)
        self._debug_step(page, "open")
        try:
            page.goto(self.config.base_url, wait_until="domcontentloaded")
        except PlaywrightError as exc:
            page.close()
            raise PageError(f"could not load {self.config.base_url}: {_said(exc)}") from None
        self._page = page
        parts = urlsplit(page.url)
        self._origin = f"{parts.scheme}://{parts.netloc}"  # the site may have redirected us
        self._check_page_state(page)
        if not self._user_agent:
            with contextlib.suppress(PlaywrightError):
                self._user_agent = str(page.evaluate("navigator.userAgent"))
        self._debug_step(page, "loaded")
        return page

    def _on_request(self, request: Request) -> None:
        if _is_submit(request):
            self._submit_sent = True

    def _on_finished(self, request: Request) -> None:
        # Runs on Playwright's dispatcher: only note the request, read its answer later.
        if _is_submit(request):
            self._submits.append(request)
        elif _is_task_news(request):
            self._task_news.append(request)
            del self._task_news[:-MAX_UNREAD_NEWS]  # an idle page must not pile them up

    def _check_page_state(self, page: Page) -> None:
        if any(marker in page.url for marker in LOGIN_MARKERS):
            raise SessionExpired(
                f"the site sent the browser to its login page ({_short(page.url)})"
            )
        blocked = blocked_by(f"{page.title()}\n{page.content()[:20000]}", _short(page.url))
        if blocked is not None:
            raise blocked

    def _dismiss_popups(self, page: Page) -> None:
        for _ in range(3):
            close = locate.visible_now(page, self.selectors.get("popup_close", []))
            if close is None:
                return
            logger.info("dismissing a pop-up over the composer")
            close.click(timeout=CLICK_TIMEOUT_MS)

    def _submit(self, page: Page, prompt: str, options: JobOptions) -> str:
        self._dismiss_popups(page)
        page_timeout_ms = self.config.page_timeout * 1000
        composer = self._found.get("composer") or self._find(page, "composer", page_timeout_ms)
        self._choose_options(page, options)
        try:
            composer.fill(prompt, timeout=KNOWN_ELEMENT_MS)
        except PlaywrightTimeout:  # the page changed since it was found: look again
            composer = self._find(page, "composer", page_timeout_ms)
            composer.fill(prompt)
        self._debug_step(page, "typed")
        self._submits.clear()
        self._submit_sent = False
        self._clicked_at = time.monotonic()
        self._press_create(page, composer)
        self._debug_step(page, "clicked")
        response = self._wait_for(
            self._submit_answer, self.config.page_timeout, lambda: self._no_submit_error(page)
        )
        if not response.ok:
            raise self._confirmed(
                api_error(response.status, response.text(), "POST /backend/video_gen")
            )
        self._check_options_taken(response, options)
        task_id = str(response.json()["id"])
        logger.debug("submitted as {}", task_id)
        return task_id

    def _submit_answer(self) -> Response | None:
        """The answer to the page's POST. On a 401 the page may ask for a new token and send
        again by itself: its second answer is the one that counts, and a submission of our own
        on top of it would pay twice. So a 401 is only taken as the answer after a grace time.
        """
        answers = [r for request in self._submits if (r := request.response()) is not None]
        accepted = next((r for r in answers if r.status != 401), None)
        if accepted is not None:
            return accepted
        if answers and time.monotonic() - self._clicked_at > RESEND_GRACE_SECONDS:
            return answers[-1]
        return None

    def _find(self, page: Page, element: str, timeout_ms: float) -> Locator:
        found = locate.find(page, element, self.selectors[element], timeout_ms)
        self._found[element] = found
        return found

    def _press_create(self, page: Page, composer: Locator) -> None:
        """Click the create button as a user would; with none on the page, Enter submits."""
        for last_try in (False, True):
            button = self._create_button(page)
            if self._submit_sent:
                return  # the first click went through after all: a second would pay twice
            if button is None:
                logger.debug("no create button on the page; pressing Enter in the composer")
                composer.press("Enter")
                return
            try:
                button.click(timeout=CLICK_TIMEOUT_MS)
                return
            except PlaywrightTimeout:
                if last_try:
                    raise
                # Something covers it (a pop-up that came late), or the page changed since
                # it was found: clear the way, look for it again and try once more.
                self._dismiss_popups(page)
                del self._found["create_button"]

    def _create_button(self, page: Page) -> Locator | None:
        """The create button found on this page before, or found now; None: the page has none."""
        if "create_button" not in self._found:
            try:
                self._find(page, "create_button", BUTTON_WAIT_MS)
            except ElementNotFound:
                self._found["create_button"] = None
        return self._found["create_button"]

    def _choose_options(self, page: Page, options: JobOptions) -> None:
        """Aspect ratio and variations through the page's settings menu, when it has one.

        Set every time, since the site remembers the last choice across jobs.
        """
        if options == self._options_on_page:
            return
        menu_button = locate.visible_now(page, self.selectors["settings_button"])
        if menu_button is None:
            if options != JobOptions():
                logger.warning("the page offers no settings menu; {} not applied", options)
            return
        choices = [("aspect_ratio", options.aspect_ratio), ("variants", str(options.variants))]
        for element, value in choices:
            menu_button.click(timeout=CLICK_TIMEOUT_MS)
            candidates = locate.with_value(self.selectors[element], value)
            item = locate.find(page, f"{element} {value}", candidates, BUTTON_WAIT_MS)
            item.click(timeout=CLICK_TIMEOUT_MS)
        self._options_on_page = options
        self._debug_step(page, "options")

    def _check_options_taken(self, response: Response, options: JobOptions) -> None:
        sent = response.request.post_data_json or {}
        wanted = (options.variants, *ASPECT_RATIOS[options.aspect_ratio])
        taken = (sent.get("n_variants", 1), sent.get("width"), sent.get("height"))
        if taken[0] != wanted[0] or (taken[1] and (taken[1], taken[2]) != wanted[1:]):
            logger.warning("the page sent {} for {}, not what was asked", taken, options)

    def _no_submit_error(self, page: Page) -> GenerationError:
        text = page.inner_text("body")[:5000]
        if "Unable to create" in text:
            line = next(line for line in text.splitlines() if "Unable to create" in line)
            return ContentRejected(f"the page says: {line.strip()}")
        blocked = blocked_by(text, "after the click")
        if blocked is not None:
            return blocked
        return PageError("the create button was clicked but the page sent no request")

    def _finished(self, task_ids: list[str], wait: float) -> list[str]:
        """Which of these tasks need no more waiting: finished, or past their deadline.

        Waits up to ``wait`` seconds for one, on the page's own polling of the task list;
        a task the page has said nothing about for a while is asked for directly.
        """
        self._ensure_browser()
        self._composer_page()  # its own polling tells us when tasks are done
        now = time.monotonic()
        for task_id in task_ids:
            if task_id not in self._following:
                submitted = self._submitted_at.pop(task_id, None)
                started = now - (time.time() - submitted) if submitted else now
                followed = Followed(started, started + self.config.timeout, now)
                self._following[task_id] = followed
                if submitted is None:  # submitted before a restart: ask for it at once
                    followed.timed = False
                    self._refresh(followed, task_id)
        until = now + wait
        while True:
            self._read_task_news()
            self._look_if_due(task_ids)
            now = time.monotonic()
            done = []
            for task_id in task_ids:
                followed = self._following[task_id]
                if now - followed.news_at > QUIET_POLL_SECONDS and followed.error is None:
                    self._refresh(followed, task_id)
                finished = followed.task.get("status") in FINISHED or followed.error is not None
                if finished or now >= followed.deadline:
                    done.append(task_id)
            if done or now >= until:
                return done
            next_look = self._next_look_at(task_ids)
            self._wait_for_network(min(SLICE_SECONDS, until - now, next_look - now))

    def _refresh(self, followed: Followed, task_id: str) -> None:
        """Ask for one task directly. An error about this task alone (unknown id, odd answer)
        is kept for its ``collect``, so that it does not hold up the other tasks in flight."""
        try:
            asked_at = time.monotonic()
            self._take_news(followed, self._fetch_task(task_id), asked_at)
        except (PermanentError, TransientError) as exc:
            followed.error = exc
            followed.news_at = time.monotonic()

    def _waiting(self, task_ids: list[str]) -> list[Followed]:
        """The followed tasks among these that are not known to be over."""
        return [
            followed
            for task_id in task_ids
            if (followed := self._following[task_id]).error is None
            and followed.task.get("status") not in FINISHED
        ]

    def _next_look_at(self, task_ids: list[str]) -> float:
        """When one of these tasks next wants a look of our own (``time.monotonic()``)."""
        expected = sorted(self._recent)[len(self._recent) // 4] if self._recent else 0.0
        due = min((look_due(f, expected) for f in self._waiting(task_ids)), default=math.inf)
        return max(due, self._looks_resume_at)

    def _look_if_due(self, task_ids: list[str]) -> None:
        """Look at the task list ourselves if a task we wait for may have finished unseen."""
        now = time.monotonic()
        if now < self._next_look_at(task_ids):
            return
        try:
            listing = self._api_get(TASK_LIST)
        except (TransientError, PermanentError, RateLimited, PlaywrightError, ValueError) as exc:
            # A failed look blames no task and stops nothing (a 429 only slows the looks):
            # the page's own polling and the look-up by id remain.
            logger.debug("no look at the task list: {}", _reason(exc))
            backoff = getattr(exc, "resume_after", None) or MAX_LOOK_SECONDS
            self._looks_resume_at = time.monotonic() + backoff
            return
        answered = time.monotonic()  # the next looks count from here: never back to back
        for followed in self._waiting(task_ids):
            followed.looked_at = answered
        self._take_listing(listing, now)

    def _take_listing(self, body: Any, seen_at: float) -> None:
        """The newest state of the tasks we follow, from a task list (or a single task)."""
        for task in _tasks_in(body):
            if (followed := self._following.get(str(task.get("id")))) is not None:
                self._take_news(followed, task, seen_at)

    def _take_news(self, followed: Followed, task: dict[str, Any], seen_at: float) -> None:
        """``seen_at``: when the site said it (``time.monotonic()``), as near as we know."""
        now, status = time.monotonic(), task.get("status")
        if status != followed.task.get("status"):
            logger.debug("{}: {} ({})", task.get("id"), status, task.get("progress_pct"))
            if status == "succeeded":
                self._prefetch(task)
                if followed.timed:
                    self._recent.append(seen_at - followed.started)
        followed.task, followed.news_at = task, now

    def _read_task_news(self) -> None:
        """Take the newest state of the tasks we follow from what the page fetched."""
        while self._task_news:
            response = self._task_news.pop(0).response()
            if response is None:
                continue
            if response.status in (401, 403):
                raise self._confirmed(
                    api_error(response.status, response.text(), _path(response.url))
                )
            if not response.ok:
                continue  # the page retries its polling; a failed poll alone says nothing
            try:
                body = response.json()
            except (PlaywrightError, ValueError):
                continue
            self._take_listing(body, time.monotonic())

    def _api_get(self, path: str) -> Any:
        """A ``/backend`` call made the way the page makes it, with the session's bearer token."""
        assert self._context is not None
        while True:
            fresh = self._token is None
            if fresh:
                self._token = str(self._session_answer().get("accessToken", ""))
            response = self._context.request.get(
                self._origin + path, headers={"Authorization": f"Bearer {self._token}"}
            )
            if response.status != 401:
                break
            self._token = None  # expired: a cached one is tried once more with a fresh one
            if fresh:
                break
        if not response.ok:
            raise self._confirmed(api_error(response.status, response.text(), path.split("?")[0]))
        return response.json()

    def _fetch_task(self, task_id: str) -> dict[str, Any]:
        tasks = _tasks_in(self._api_get(f"/backend/video_gen/{task_id}"))
        if not tasks:
            raise PageError(f"/backend/video_gen/{task_id} did not answer with a task")
        return tasks[0]

    def _prefetch(self, task: dict[str, Any]) -> None:
        """Start downloading a finished task's images at once, off the browser's thread: the
        daemon sends its next prompt first, and they come down meanwhile. Only a head start:
        whatever goes wrong is dealt with when the images are collected."""
        if not self._direct_downloads:
            return
        try:
            for index, generation in enumerate(task.get("generations") or []):
                key, url = (str(task.get("id")), index), _full_size_url(self._origin, generation)
                if url is not None and key not in self._prefetched:  # (seen again after a reload)
                    while len(self._prefetched) >= MAX_PREFETCHED:  # of tasks never collected
                        del self._prefetched[next(iter(self._prefetched))]
                    self._prefetched[key] = self._start_fetch(url)
        except Exception as exc:  # (no thread to be had, an odd answer): collect() will see
            logger.debug("no early download: {}", type(exc).__name__)

    def _download(self, task_id: str, index: int, generation: Any) -> ImageFile:
        url = _full_size_url(self._origin, generation)
        if url is None:
            raise DownloadFailed(f"{task_id}: generation {index + 1} has no full-size URL")
        prefetched = self._prefetched.pop((task_id, index), None)
        refused = False
        if self._direct_downloads:
            try:
                return self._image(self._fetch_direct(url, prefetched), url, generation)
            except urllib.error.HTTPError as exc:
                refused = exc.code in (401, 403)  # it may want the browser's cookies
                logger.debug("{}: HTTP {} without the browser; through it", _short(url), exc.code)
            except (OSError, HTTPException, ValueError, DownloadFailed) as exc:
                # (DownloadFailed: not the image, such as a page in its place.) The type only:
                # some of these errors quote the URL, whose signature is a credential.
                name = type(exc).__name__
                logger.debug("{}: {} without the browser; through it", _short(url), name)
        image = self._image(self._fetch_through_browser(url), url, generation)
        if refused:  # and the browser was let in: through the browser until its next start
            self._direct_downloads = False
            logger.info(
                "{} refuses downloads outside the browser; downloading through the browser",
                urlsplit(url).netloc,
            )
        return image

    def _image(self, data: bytes, url: str, generation: dict[str, Any]) -> ImageFile:
        png, width, height, source_format = to_png(data, _short(url))
        expected = (generation.get("width"), generation.get("height"))
        if all(isinstance(v, int) for v in expected) and (width, height) != expected:
            raise DownloadFailed(
                f"{_short(url)}: got {width}x{height}, the generation is "
                f"{expected[0]}x{expected[1]}"
            )
        return ImageFile(png, width, height, _short(url), source_format)

    def _fetch_direct(self, url: str, prefetched: Future[bytes] | None) -> bytes:
        """The file at a signed URL, fetched without the browser: its signature is all the
        credential it needs, and the trip through the browser's driver costs several times
        as much. Waited for in slices, so that a stop is not held up."""
        future = prefetched or self._start_fetch(url)
        deadline = time.monotonic() + self.config.page_timeout
        while not future.done():
            self._check_stop()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no image after {self.config.page_timeout:g}s")
            wait_for_futures([future], timeout=SLICE_SECONDS)
        return future.result()

    def _start_fetch(self, url: str) -> Future[bytes]:
        return in_background(partial(fetch, url, self._user_agent, self.config.page_timeout))

    def _fetch_through_browser(self, url: str) -> bytes:
        assert self._context is not None
        try:
            response = self._context.request.get(url)
            data = response.body()
        except PlaywrightError as exc:
            raise DownloadFailed(f"{_short(url)}: {_said(exc)}") from None
        if not response.ok:
            raise DownloadFailed(f"{_short(url)}: HTTP {response.status}")
        return data

    # -- waiting ----------------------------------------------------------------------------

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted()

    def _wait_for_network(self, seconds: float) -> None:
        """Return at the page's next network answer, or after ``seconds``, whichever is first."""
        self._check_stop()
        assert self._page is not None
        with contextlib.suppress(PlaywrightTimeout):
            timeout_ms = max(seconds, MIN_WAIT_SECONDS) * 1000
            self._page.wait_for_event("requestfinished", timeout=timeout_ms)
        self._check_stop()

    def _wait_for(
        self,
        ready: Callable[[], T | None],
        seconds: float,
        on_timeout: Callable[[], GenerationError],
    ) -> T:
        deadline = time.monotonic() + seconds
        while (value := ready()) is None:
            if time.monotonic() >= deadline:
                raise on_timeout()
            self._wait_for_network(min(SLICE_SECONDS, deadline - time.monotonic()))
        return value

    # -- diagnosis --------------------------------------------------------------------------

    def _page_needs_reload(self) -> None:
        """After a failure: a new page next time, and the tasks' deadlines start again."""
        self._forget_page()
        self._following.clear()

    def _forget_page(self) -> None:
        if self._page is not None:
            with contextlib.suppress(PlaywrightError):
                self._page.close()
        self._page = None
        self._submits.clear()
        self._task_news.clear()
        self._options_on_page = None  # the site may remember them; we set them again

    def _artifact_base(self, label: str) -> Path:
        stamp = time.strftime("%Y%m%d_%H%M%S")
        digest = hashlib.sha256(label.encode()).hexdigest()[:5]
        self.config.artifacts_dir.mkdir(parents=True, exist_ok=True)
        return self.config.artifacts_dir / f"{stamp}_{digest}"

    def _save_artifacts(self, prompt: str, error: GenerationError) -> None:
        """A screenshot and the HTML of the page, named in the error so the log points at them."""
        page = self._page
        if page is None or page.is_closed():
            return
        base = self._artifact_base(prompt)
        try:
            page.screenshot(path=f"{base}.png", full_page=True, timeout=5000)
            Path(f"{base}.html").write_text(page.content(), encoding="utf-8")
        except PlaywrightError as exc:
            logger.debug("no diagnosis saved: {}", _said(exc))
            return
        error.detail += f" [capture: {base}.png, {base}.html]"

    def _debug_step(self, page: Page, step: str) -> None:
        if not self.config.debug:
            return
        self._step += 1
        logger.debug("step {}: {} ({})", self._step, step, _short(page.url))
        if page.url.startswith("http"):
            base = self._artifact_base(step)
            with contextlib.suppress(PlaywrightError):
                page.screenshot(path=f"{base}_step{self._step:03d}_{step}.png", timeout=5000)

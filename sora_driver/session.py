"""A saved browser session (Playwright's storage state file) and the site's word on it.

The site's own session endpoint, ``GET <site>/api/auth/session``, answers a logged-in browser
with ``{"user": {...}, "expires": ...}`` and anyone else with ``null`` or ``{}`` (the NextAuth
convention, which sites of the same family share). ``SessionAnswer.valid`` is the one check
of a session, whoever asks: the driver at each start, ``login`` while a person logs in, and
``status`` without a browser.

Shared by every web backend: it knows nothing of any site but that endpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from loguru import logger
from playwright.sync_api import APIRequestContext, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from sora_driver.classify import api_error, blocked_by
from sora_driver.errors import SESSION_MISSING_MESSAGE, PageError, SessionExpired, SessionMissing
from sora_watcher.atomic import fingerprint
from sora_watcher.errors import Fingerprint, GenerationError, QueueStopError, Resume
from sora_watcher.status import age

SESSION_PATH = "/api/auth/session"
T = TypeVar("T")
HttpError = Callable[[int, str, str], GenerationError]  # (status, text, where) -> its error


def site_of(url: str) -> str:
    """The site a URL names, as users know it ("chatgpt.com"): in hints and status lines."""
    return urlsplit(url).netloc or url


def session_url(base_url: str) -> str:
    return base_url.rstrip("/") + SESSION_PATH


def is_private(path: Path) -> bool:
    """Readable by its owner alone: a session is as good as a password."""
    return path.stat().st_mode & 0o077 == 0


def check_saved(path: Path, missing_message: str = SESSION_MISSING_MESSAGE) -> None:
    """The session file is there and is a saved session (what the site thinks of it is
    ``SessionAnswer.valid``'s to say). Warns when other users may read it."""
    if not path.is_file():
        raise SessionMissing(missing_message)
    if not is_private(path):
        logger.warning("{} can be read by other users of this machine: chmod 600 it", path)
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # half copied, or not a session at all
        raise SessionExpired(f"{path} is not a saved session: {exc}") from None


@dataclass(frozen=True)
class SessionAnswer:
    """What the session endpoint answered."""

    status: int
    text: str
    body: Any = field(init=False)  # the JSON ("null" for a browser not logged in)
    is_json: bool = field(init=False)

    def __post_init__(self) -> None:
        try:
            body, is_json = json.loads(self.text), True
        except ValueError:
            body, is_json = None, False
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "is_json", is_json)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def valid(self) -> bool:
        """The site knows this browser's user: the session is good."""
        return isinstance(self.body, dict) and bool(self.body.get("user"))

    @property
    def user(self) -> str | None:
        """Who is logged in, as the site names them; None when the session is not valid."""
        if not self.valid:
            return None
        user = self.body["user"]
        if not isinstance(user, dict):
            return "someone"
        return str(user.get("email") or user.get("name") or "someone")

    @property
    def expires(self) -> str:
        return str(self.body.get("expires", "?")) if isinstance(self.body, dict) else "?"

    def checked(self, url: str, http_error: HttpError = api_error) -> dict[str, Any]:
        """The body of a valid session, asked at ``url``; else what the answer means: a
        challenge or a phone check, an HTTP error (as ``http_error``, the site's own reading,
        says), or ``require_valid``'s."""
        blocked = blocked_by(self.text, f"GET {url}")
        if blocked is not None:
            raise blocked
        if not self.ok:
            raise http_error(self.status, self.text, SESSION_PATH)
        return self.require_valid(url)

    def require_valid(self, url: str) -> dict[str, Any]:
        """The answer's body; ``PageError`` when it is not JSON, ``SessionExpired`` when the
        site no longer knows the session."""
        if not self.is_json:
            raise PageError(f"GET {url}: not JSON ({self.text[:80]!r})")
        if not self.valid:
            raise SessionExpired(
                f"GET {url} answered {self.text.strip()[:20]!r}: the saved session is no longer "
                "valid; log in again and save a new session.json"
            )
        body: dict[str, Any] = self.body
        return body


def ask(
    request: APIRequestContext, base_url: str, timeout_ms: float | None = None
) -> SessionAnswer:
    """The session endpoint's answer, with the cookies of ``request``; ``PlaywrightError``
    when it cannot be asked."""
    response = request.get(session_url(base_url), timeout=timeout_ms)
    # bytes decoded leniently: an answer in another encoding is simply not a valid session
    return SessionAnswer(response.status, response.body().decode("utf-8", "replace"))


def accepted(session_file: Path, base_url: str, timeout: float) -> tuple[bool, str]:
    """Ask the site's own session endpoint, with the saved cookies but without a browser."""
    url = session_url(base_url)
    try:
        with sync_playwright() as pw:
            context = pw.request.new_context(storage_state=str(session_file))
            answer = ask(context, base_url, timeout * 1000)
            context.dispose()
    except PlaywrightError as exc:
        return False, f"could not ask {url}: {exc.message.splitlines()[0]}"
    if answer.valid:
        return True, f"accepted by {base_url} (expires {answer.expires})"
    return False, f"refused by {base_url} (answer {answer.text.strip()[:30]!r}): log in again"


def status_lines(
    session: Path, base_url: str, site: str, timeout: float, offline: bool
) -> tuple[list[str], bool]:
    """What ``sora-watcher status`` says of a saved session: there, private, and (unless
    ``offline``) accepted by the site; and whether it is good."""
    if not session.is_file():
        missing = f"session: {session} is missing: run `sora-watcher login` and log in to {site}"
        return [missing], False
    private = "" if is_private(session) else " (readable by others: chmod 600 it)"
    saved = age(time.time() - session.stat().st_mtime)
    lines = [f"session: {session}, saved {saved} ago{private}"]
    if offline:
        return lines, True
    ok, words = accepted(session, base_url, timeout)
    return [*lines, f"  {words}"], ok


class SessionGuard:
    """A web backend's way back from its session errors: the queue pauses until the session
    file is replaced (the daemon does not know what a session is)."""

    def __init__(self, session_file: Path, site: str) -> None:
        self.session_file = session_file
        self.site = site  # named in the hint: "log in to <site> by hand"
        self.opened: Fingerprint | None = fingerprint(session_file)

    def __call__(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except (SessionMissing, SessionExpired) as exc:
            raise self.with_resume(exc) from None

    def with_resume(self, error: QueueStopError) -> QueueStopError:
        session = self.session_file
        error.resume = Resume(
            file=session,
            seen=self.opened,
            hint=f"log in to {self.site} by hand and save a new {session}; the queue resumes "
            "by itself",
        )
        return error

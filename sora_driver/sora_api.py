"""Sora's ``/backend`` answers, read in one place into typed values.

A task is read leniently (a field of an odd type reads as absent: the list of tasks the page
polls holds other people's shapes too), but an answer we cannot do without (not JSON, no task
where one was asked for, a submission without an id) raises one error, ``PageError`` with
"unexpected answer", which is worth another try. The driver's own mistakes are not caught
here: they surface as the bugs they are.

``SoraApi`` makes the calls the way the page makes them, with the session's bearer token,
through the browser's context (its cookies, its network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from playwright.sync_api import APIResponse, Request, Response
from playwright.sync_api import Error as PlaywrightError

from sora_driver.browser import WarmBrowser
from sora_driver.classify import api_error
from sora_driver.diagnostics import said
from sora_driver.errors import PageError, SessionExpired
from sora_driver.session import ask, session_url
from sora_watcher.errors import ContentRejected, GenerationError, TaskFailed

# The pixel sizes Sora makes for each aspect ratio.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (480, 480),
    "3:2": (720, 480),
    "2:3": (480, 720),
    "16:9": (854, 480),
    "9:16": (480, 854),
}
FINISHED = {"succeeded", "failed", "cancelled"}
TASK_LIST = "/backend/v2/list_tasks?limit=20"
SUBMIT = "/backend/video_gen"


class BrowserFailed(PageError):
    """The browser could not make a call at all (its network, its process): nothing to do
    with the task asked for, so it fails the whole step, never one task."""


def unexpected(where: str, what: str) -> PageError:
    """The one error for an answer of a shape we cannot use: the site changed, or had a
    hiccup; worth another try, and the detail says what it was."""
    return PageError(f"unexpected answer: {where}: {what}")


def _path(url: str) -> str:
    return urlsplit(url).path.rstrip("/")


def is_submit(request: Request) -> bool:
    return request.method == "POST" and _path(request.url).endswith(SUBMIT)


def is_task_update(request: Request) -> bool:
    """The page's own polling of its tasks: the task list, or one task by its id."""
    path = _path(request.url)
    return request.method == "GET" and (path.endswith("/backend/v2/list_tasks") or SUBMIT in path)


def _timestamp(value: Any) -> float:
    """A task's ``created_at`` (ISO 8601 or Unix seconds) as Unix seconds; 0 if unreadable."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Picture:
    """One generation of a task: its full-size image (never the grid's thumbnail)."""

    url: str | None  # absolute; None when the answer gives none
    width: int | None = None
    height: int | None = None

    @classmethod
    def read(cls, raw: Any, origin: str) -> Picture:
        """Its ``url``, or else ``encodings.source.path``."""
        generation = _dict(raw)
        source = _dict(_dict(generation.get("encodings")).get("source"))
        url = generation.get("url") or source.get("path")
        try:
            absolute = urljoin(origin + "/", str(url)) if url else None
        except ValueError:  # not a URL at all ("http://[bad"): as if there were none
            absolute = None
        return cls(absolute, _int(generation.get("width")), _int(generation.get("height")))


@dataclass(frozen=True)
class Task:
    """A generation task as the site reports it."""

    id: str
    status: str | None = None  # queued, running, succeeded, failed, cancelled ...
    progress: Any = None  # for the log only
    generations: tuple[Picture, ...] = ()
    prompt: str | None = None
    created_at: float = 0.0  # Unix seconds
    failure_reason: str | None = None
    moderation: dict[str, Any] = field(default_factory=dict)
    unsafe_generations: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def read(cls, raw: dict[str, Any], origin: str) -> Task:
        status, prompt, reason = raw.get("status"), raw.get("prompt"), raw.get("failure_reason")
        generations = raw.get("generations")
        return cls(
            id=str(raw.get("id")),
            status=str(status) if status is not None else None,
            progress=raw.get("progress_pct"),
            generations=tuple(
                Picture.read(g, origin)
                for g in (generations if isinstance(generations, list) else [])
            ),
            prompt=prompt if isinstance(prompt, str) else None,
            created_at=_timestamp(raw.get("created_at")),
            failure_reason=str(reason) if reason else None,
            moderation=_dict(raw.get("moderation_result")),
            unsafe_generations=_int(raw.get("num_unsafe_generations")) or 0,
        )


def tasks_in(body: Any, origin: str) -> list[Task]:
    """The tasks of a task list, or the one task of a task's own answer; [] for anything else."""
    if isinstance(body, dict) and isinstance(body.get("task_responses"), list):
        listed = body["task_responses"]
        return [Task.read(t, origin) for t in listed if isinstance(t, dict) and t.get("id")]
    if isinstance(body, dict) and "id" in body and "status" in body:
        return [Task.read(body, origin)]
    return []


def finished_task_error(task: Task) -> GenerationError | None:
    """``None`` for a usable succeeded task, else why it cannot give an image."""
    moderation, reason, unsafe = task.moderation, task.failure_reason, task.unsafe_generations
    rejected = (
        moderation.get("type") == "terminal" or moderation.get("is_output_rejection") or unsafe
    )
    if task.status == "succeeded" and task.generations:
        return None
    words = ", ".join(
        part
        for part in (
            f"status={task.status}",
            f"failure_reason={reason!r}" if reason else "",
            f"moderation={moderation.get('type')}/{moderation.get('code')}" if moderation else "",
            f"unsafe_generations={unsafe}" if unsafe else "",
        )
        if part
    )
    if rejected:
        return ContentRejected(f"task {task.id}: {words}")
    return TaskFailed(f"task {task.id}: {words or 'no image in the answer'}")


def submitted_id(body: Any) -> str:
    """The task id the site gave a submission."""
    task_id = body.get("id") if isinstance(body, dict) else None
    if not task_id:
        raise unexpected(f"POST {SUBMIT}", "no task id")
    return str(task_id)


def json_of(response: APIResponse | Response, where: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise unexpected(where, f"not JSON ({response.text()[:80]!r})") from None


class SoraApi:
    """The ``/backend`` calls of the page, made through the browser's context."""

    def __init__(self, browser: WarmBrowser, origin: str) -> None:
        self.browser = browser
        self.origin = origin  # the site's, once redirects are followed (see SitePage)
        self._token: str | None = None  # the session's bearer token, asked for once per context
        self._token_context: object = None

    def session(self) -> dict[str, Any]:
        """The session endpoint's answer; raises what it means if the session is not valid."""
        url = session_url(self.origin)
        try:
            answer = ask(self.browser.context.request, self.origin)
        except PlaywrightError as exc:
            raise PageError(f"GET {url} failed: {said(exc)}") from None
        return answer.checked(url)

    def confirmed(self, error: GenerationError) -> GenerationError:
        """A 401 may only mean the page's bearer token went stale: the page derives a new
        one from the session cookie when it loads. Only a session the site no longer knows
        stops the queue; a stale token is a transient error, and the page is reloaded."""
        if isinstance(error, SessionExpired):
            self.session()  # raises SessionExpired if the session itself is gone
            return PageError(f"{error.detail}; the session is still valid: reloading the page")
        return error

    def get(self, path: str) -> Any:
        """A ``/backend`` call made the way the page makes it, with the session's bearer token."""
        try:
            return self._get(path)
        except PlaywrightError as exc:
            raise BrowserFailed(f"browser: {said(exc)}") from None

    def task_list(self) -> list[Task]:
        return tasks_in(self.get(TASK_LIST), self.origin)

    def task(self, task_id: str) -> Task:
        where = f"{SUBMIT}/{task_id}"
        tasks = tasks_in(self.get(where), self.origin)
        if not tasks:
            raise PageError(f"{where} did not answer with a task")
        return tasks[0]

    def updates(self, requests: list[Request]) -> list[Task]:
        """The tasks in the answers the page had to its own polling. A failed poll alone says
        nothing (the page polls again), but a refused one may mean the session is gone."""
        tasks: list[Task] = []
        for request in requests:
            response = request.response()
            if response is None:
                continue
            if response.status in (401, 403):
                raise self.confirmed(
                    api_error(response.status, response.text(), _path(response.url))
                )
            if not response.ok:
                continue
            try:
                body = response.json()
            except (PlaywrightError, ValueError):
                continue
            tasks.extend(tasks_in(body, self.origin))
        return tasks

    def _get(self, path: str) -> Any:
        context = self.browser.context
        if context is not self._token_context:  # a new context: a new token
            self._token, self._token_context = None, context
        while True:
            fresh = self._token is None
            if fresh:
                self._token = str(self.session().get("accessToken", ""))
            response = context.request.get(
                self.origin + path, headers={"Authorization": f"Bearer {self._token}"}
            )
            if response.status != 401:
                break
            self._token = None  # expired: a cached one is tried once more with a fresh one
            if fresh:
                break
        if not response.ok:
            raise self.confirmed(api_error(response.status, response.text(), path.split("?")[0]))
        return json_of(response, path.split("?")[0])

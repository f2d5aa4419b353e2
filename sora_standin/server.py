"""The HTTP side of the stand-in: a ThreadingHTTPServer, its routes and the StandIn facade.

Control endpoints, for the demo and the benchmark (tests in-process use StandIn directly):
    GET  /_standin/health, /_standin/submissions
    POST /_standin/config    {"delay": s, "max_concurrent": n|null, "page": {...page variant}}
    POST /_standin/scenario  {"name": ..., "count": n|null, "params": {...}}  (see scenarios.py)
    GET  /_standin/scenarios what is armed, how many are left, and the page variant
    POST /_standin/clear     disarm every scenario and restore the default page
    POST /_standin/revoke    every session cookie and token issued so far stops working
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any
from urllib.parse import quote, unquote

from standin_kit import sessions
from standin_kit.handler import (
    STATIC_TYPES,
    HTTPError,
    SiteHandler,
    control_routes,
    page_config,
    route_table,
)
from standin_kit.site import SiteStandIn

from . import auth, images, scenarios, tasks

TOKEN_EXPIRED = "Your authentication token has expired. Please try signing in again."
PHONE_VERIFICATION = "Verify your phone number to continue."
_ASSET_RE = re.compile(
    r"^assets/(?P<task>task_[0-9a-z]+)/(?P<stamp>\d+)_"
    r"(?:src_(?P<src>\d+)\.(?P<ext>png|webp)|img_(?P<webp>\d+)\.webp"
    r"|img_(?P<thumb>\d+)_thumb\.webp)$"
)
# What each refusal of `POST /backend/video_gen` answers: status, code, type, message.
_REFUSALS: dict[str, tuple[int, str, str, str]] = {
    "too_many_concurrent": (
        429,
        "too_many_concurrent_tasks",
        "invalid_request_error",
        "You already have 3 generations in progress. Please wait for one to finish.",
    ),
    "heavy_load": (
        503,
        "heavy_load",
        "server_error",
        "We're experiencing heavy load. Please try again later.",
    ),
    "unable_to_create": (
        400,
        "content_policy_violation",
        "invalid_request_error",
        "This prompt may violate our content policies.",
    ),
}


PAGE_CONFIG_ANCHOR = b'<script src="/static/app.js">'  # the page variant goes before it


class _HTTPError(HTTPError):
    """Raised by route code to answer with the API error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        type_: str = "invalid_request_error",
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status, message)
        self.code, self.param, self.type = code, param, type_
        self.message = message
        # Fields some errors carry both inside "error" and beside it (access_resets_in_seconds).
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        shape = {"message": self.message, "type": self.type, "param": self.param}
        return {"error": {**shape, "code": self.code, **self.extra}, **self.extra}


class StandIn(SiteStandIn):
    """A local stand-in for the Sora web app, served from a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 2.0,
        secret: str = "standin-secret",
        verbose: bool = False,
    ) -> None:
        super().__init__(
            host,
            port,
            _Handler,
            scenarios=scenarios.Scenarios(),
            page_variants=scenarios.PAGE_VARIANTS,
            delay=delay,
            secret=secret,
            verbose=verbose,
        )
        # None = no limit. The real site allows about 3 tasks in progress per account.
        self.max_concurrent: int | None = None
        self.submissions: list[dict[str, Any]] = []
        self.full_size_requests: Counter[str] = Counter()  # task id -> requests of its images
        self.tasks = tasks.TaskStore()
        # Users whose page showed the phone verification dialog: their POSTs are refused.
        self._phone_blocked: set[str] = set()

    def clear_scenarios(self) -> None:
        super().clear_scenarios()
        with self._lock:
            self._phone_blocked.clear()

    def set_phone_blocked(self, user: str, blocked: bool) -> None:
        with self._lock:
            if blocked:
                self._phone_blocked.add(user)
            else:
                self._phone_blocked.discard(user)

    def is_phone_blocked(self, user: str) -> bool:
        with self._lock:
            return user in self._phone_blocked

    def record_submission(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.submissions.append(entry)

    def record_full_size_request(self, task_id: str) -> None:
        with self._lock:
            self.full_size_requests[task_id] += 1

    def submissions_snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.submissions)


class _Handler(SiteHandler[StandIn]):
    server_version = "sora-standin"
    static_package = "sora_standin"
    SITE_HOST = "sora.com"

    def refusal(
        self, status: int, message: str, code: str | None = None, param: str | None = None
    ) -> HTTPError:
        return _HTTPError(status, message, code, param)

    def gate(self, path: str) -> bool:
        if path.startswith("/backend/"):
            self.user = self._bearer_user()
            # A valid token refused anyway, as when the site's token expires early.
            if self.app.fire("token_expired"):
                raise _HTTPError(401, TOKEN_EXPIRED, "token_expired")
        return False

    def new_device_id(self) -> str:
        return tasks.new_id("did").removeprefix("did_")

    # --- authentication -------------------------------------------------------------------

    def _session(self) -> tuple[str, int] | None:
        cookies = self._cookies()
        for name in (sessions.SESSION_COOKIE, auth.LEGACY_SESSION_COOKIE):
            if name in cookies:
                secret = self.app.session_secret
                session = sessions.parse_session_value(cookies[name], secret, time.time())
                if session is not None:
                    return session
        return None

    def _bearer_user(self) -> str:
        user = self.bearer_user()
        if user is None:
            raise _HTTPError(401, TOKEN_EXPIRED, "token_expired")
        return user

    # --- pages ----------------------------------------------------------------------------

    def page_index(self, match: re.Match[str]) -> None:
        if self._cloudflare():
            return
        session = self._session()
        if session is None:
            self._redirect("/login?next=/")
            return
        phone = self.app.fire("phone_verification") is not None
        # The account stays blocked until a page load comes without the dialog.
        self.app.set_phone_blocked(session[0], phone)
        variant = self.app.checked_page_variant()
        body = self._static_file("index.html") or b""
        if variant or phone:
            config = {"variant": variant, "phone_verification": phone}
            body = page_config(body, config, PAGE_CONFIG_ANCHOR)
        headers = [("Cache-Control", "no-store")]
        headers += [("Set-Cookie", cookie) for cookie in self._device_cookie()]
        self._send(200, body, STATIC_TYPES[".html"], headers)

    # --- API ------------------------------------------------------------------------------

    def api_session(self, match: re.Match[str]) -> None:
        if self._cloudflare():
            return
        session = self._session()
        if session is None:
            self._json(200, None)
            return
        self._json(200, self.session_body(*session))

    def create_task(self, match: re.Match[str]) -> None:
        assert self.user is not None
        body = self._json_body()
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _HTTPError(400, "A prompt is required.", "invalid_prompt", "prompt")
        n_variants = body.get("n_variants", 1)
        if type(n_variants) is not int or n_variants not in (1, 2, 4):
            raise _HTTPError(
                400, "n_variants must be 1, 2 or 4.", "invalid_n_variants", "n_variants"
            )
        size = {}
        for name in ("width", "height"):
            value = body.get(name, 480)
            if type(value) is not int or not 64 <= value <= 4096:
                raise _HTTPError(400, f"{name} must be an integer from 64 to 4096.", param=name)
            size[name] = value
        kind = body.get("type", "image_gen")
        if kind != "image_gen":
            raise _HTTPError(400, "Only type image_gen is supported here.", param="type")
        if self.app.is_phone_blocked(self.user):
            raise _HTTPError(403, PHONE_VERIFICATION, "phone_verification_required")
        self._refuse_if_armed()
        now = time.time()
        limit = self.app.max_concurrent
        if limit is not None and self.app.tasks.active_count(self.user, now) >= limit:
            message = f"You already have {limit} generations in progress. Please wait."
            raise _HTTPError(429, message, "too_many_concurrent_tasks")
        outcome, params = self.app.fire(*scenarios.TASK_OUTCOMES) or (None, {})
        webp = self.app.fire("webp_source") is not None
        task = self.app.tasks.create(
            self.user,
            prompt,
            n_variants,
            size["width"],
            size["height"],
            kind,
            self.app.delay,
            now,
            outcome=outcome,
            stall_at=params.get("progress", 0.0),  # only read when the outcome is "stalled"
            src_ext="webp" if webp else "png",
        )
        self.app.record_submission({**body, "task_id": task.id, "at": now})
        # The page cannot see scenarios: this header tells it to stop polling (no_polling).
        headers = [("X-Standin-No-Polling", "1")] if self.app.fire("no_polling") else []
        self._json(200, {"id": task.id, "priority": 1}, headers)

    def _refuse_if_armed(self) -> None:
        fired = self.app.fire(*scenarios.SUBMIT_REFUSALS)
        if fired is None:
            return
        name, params = fired
        if name == "rate_limit":
            if params["credit"]:
                kind = "rate_limit_and_credit_balance"
                message = "You're out of image gens. Wait until free access resets or buy credits."
            else:
                kind = "rate_limit_exhausted"
                message = "You've reached your limit of generations for today."
            extra = {"access_resets_in_seconds": params["resets_in"]}
            raise _HTTPError(429, message, kind, type_=kind, extra=extra)
        status, code, type_, message = _REFUSALS[name]
        raise _HTTPError(status, message, code, type_=type_)

    def list_tasks(self, match: re.Match[str]) -> None:
        self._task_page(default_limit=20)

    def list_older(self, match: re.Match[str]) -> None:
        self._task_page(default_limit=10)

    def _task_page(self, default_limit: int) -> None:
        assert self.user is not None
        limit = self._int_query("limit", default_limit, 1, 100)
        before = self.query.get("before", [None])[0]
        try:
            chosen, has_more = self.app.tasks.page(self.user, limit, before)
        except KeyError:
            raise _HTTPError(400, f"Unknown task {before}", "invalid_before", "before") from None
        now = time.time()
        self._json(
            200,
            {
                "task_responses": [tasks.task_json(t, now, self._asset_url(now)) for t in chosen],
                "last_id": chosen[-1].id if chosen else None,
                "has_more": has_more,
            },
        )

    def get_task(self, match: re.Match[str]) -> None:
        assert self.user is not None
        task = self.app.tasks.get(self.user, match["task_id"])
        if task is None:
            raise _HTTPError(404, f"Task {match['task_id']} not found", "task_not_found")
        now = time.time()
        self._json(200, tasks.task_json(task, now, self._asset_url(now)))

    def _asset_url(self, now: float) -> tasks.AssetUrl:
        base, secret = self.app.base_url, self.app.secret

        def url(path: str) -> str:
            return f"{base}/vg-assets/{quote(path, safe='')}?{auth.asset_query(path, secret, now)}"

        return url

    # --- assets ---------------------------------------------------------------------------

    def asset(self, match: re.Match[str]) -> None:
        # Clients may or may not keep %2F encoded: sign and parse the decoded path.
        path = unquote(match["path"])
        st, se, sig = (self.query.get(key, [""])[0] for key in ("st", "se", "sig"))
        if not auth.check_asset_signature(path, st, se, sig, self.app.secret, time.time()):
            raise _HTTPError(403, "Signature not valid or expired", "invalid_signature")
        parsed = _ASSET_RE.match(path)
        task = self.app.tasks.find(parsed["task"]) if parsed else None
        if parsed is None or task is None or parsed["stamp"] != task.asset_stamp:
            raise _HTTPError(404, "No such asset", "not_found")
        full_size = parsed["src"] is not None  # the file a generation's `url` points at
        if full_size:
            self.app.record_full_size_request(task.id)
        if full_size and parsed["ext"] != task.src_ext:
            raise _HTTPError(404, "No such asset", "not_found")
        # A full-size WEBP (webp_source) is the same file as the source encoding.
        kind: images.Kind = (
            "thumb" if parsed["thumb"] else "png" if parsed["ext"] == "png" else "webp"
        )
        index = int(parsed["src"] or parsed["webp"] or parsed["thumb"])
        if index >= task.n_variants or not task.has_images(time.time()):
            raise _HTTPError(404, "No such asset", "not_found")
        if full_size and not self._cookies() and self.app.fire("cdn_needs_cookies"):
            # As a CDN behind Cloudflare may: a client without the browser's cookies is refused.
            raise _HTTPError(403, "Forbidden: no clearance cookie", "cdn_needs_cookies")
        data = images.render(task.prompt, index, task.output_size, kind)
        if full_size:
            slow = self.app.fire("slow_cdn")
            # One wait on an event rather than a sleep: stop() ends it at once.
            if slow and self.app.stopping.wait(slow[1]["seconds"]):
                self.close_connection = True
                return
            if self.app.fire("truncated_image"):
                data = data[: len(data) // 2]
        content_type = "image/png" if kind == "png" else "image/webp"
        self._send(200, data, content_type, [("Cache-Control", "private, max-age=86400")])

    # --- control endpoints (tests, bench, demo) ---------------------------------------------

    def submissions(self, match: re.Match[str]) -> None:
        self._json(200, self.app.submissions_snapshot())

    def config(self, match: re.Match[str]) -> None:
        body = self._json_body()
        self._configure(body)
        if "max_concurrent" in body:
            limit = body["max_concurrent"]
            if limit is not None and (type(limit) is not int or limit < 1):
                raise _HTTPError(400, "max_concurrent must be null or >= 1", param="max_concurrent")
            self.app.max_concurrent = limit
        # The page variant is reported by GET /_standin/scenarios: this answer keeps its shape.
        self._json(200, {"delay": self.app.delay, "max_concurrent": self.app.max_concurrent})


_Handler.routes = route_table(
    [
        ("GET", r"/", _Handler.page_index),
        ("GET", r"/login", _Handler.page_login),
        ("POST", r"/login", _Handler.login_submit),
        ("GET", r"/static/(?P<name>[A-Za-z0-9_-]+\.[a-z]+)", _Handler.static),
        ("GET", r"/favicon\.ico", _Handler.favicon),
        ("GET", r"/api/auth/session", _Handler.api_session),
        ("POST", r"/backend/video_gen", _Handler.create_task),
        ("GET", r"/backend/video_gen", _Handler.list_older),
        ("GET", r"/backend/video_gen/(?P<task_id>task_[0-9a-z]+)", _Handler.get_task),
        ("GET", r"/backend/v2/list_tasks", _Handler.list_tasks),
        ("GET", r"/vg-assets/(?P<path>.+)", _Handler.asset),
        ("GET", r"/_standin/submissions", _Handler.submissions),
        ("POST", r"/_standin/config", _Handler.config),
        *control_routes("/_standin"),
    ]
)

__all__ = ["StandIn"]

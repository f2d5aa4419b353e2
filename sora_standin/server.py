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

import json
import re
import secrets
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from html import escape
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

from standin_kit import StandInApp, TrackedServer
from standin_kit import is_loopback as is_loopback  # imported from here by __main__ and others

from . import auth, images, scenarios, tasks

MAX_BODY = 1 << 20
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
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


def _static_file(name: str) -> bytes | None:
    entry = resources.files(__package__).joinpath("static", name)
    return entry.read_bytes() if entry.is_file() else None


def _with_page_config(page: bytes, config: dict[str, Any]) -> bytes:
    """index.html with a JSON config that app.js reads before building the page."""
    # "<" escaped so that no value can close the script element early.
    data = json.dumps(config).replace("<", "\\u003c")
    app = b'<script src="/static/app.js">'
    tag = f'<script id="standin-page" type="application/json">{data}</script>\n  '
    return page.replace(app, tag.encode() + app, 1)


class _HTTPError(Exception):
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
        super().__init__(message)
        self.status, self.code, self.param, self.type = status, code, param, type_
        self.message = message
        # Fields some errors carry both inside "error" and beside it (access_resets_in_seconds).
        self.extra = extra or {}


class StandIn(StandInApp):
    """A local stand-in for the Sora web app, served from a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 2.0,
        secret: str = "standin-secret",
        verbose: bool = False,
    ) -> None:
        super().__init__(host, port, _Handler, join_timeout=5)
        self.delay = delay
        self.secret = secret
        self.verbose = verbose
        # None = no limit. The real site allows about 3 tasks in progress per account.
        self.max_concurrent: int | None = None
        self.submissions: list[dict[str, Any]] = []
        self.full_size_requests: Counter[str] = Counter()  # task id -> requests of its images
        self.tasks = tasks.TaskStore()
        self._scenarios = scenarios.Scenarios()
        self._page_variant: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._emails: dict[str, str] = {}
        self._revocations = 0
        # Users whose page showed the phone verification dialog: their POSTs are refused.
        self._phone_blocked: set[str] = set()

    def storage_state(
        self, user: str = "demo", valid_for: float = auth.SESSION_LIFETIME
    ) -> dict[str, Any]:
        return auth.make_storage_state(self.base_url, user, self.session_secret, valid_for)

    # --- failure modes and page variants (see scenarios.py) -------------------------------

    def scenario(self, name: str, count: int | None = 1, **params: Any) -> None:
        """Arm a failure mode for the next `count` occurrences (None: until cleared)."""
        self._scenarios.arm(name, count, params)

    def clear_scenarios(self) -> None:
        self._scenarios.clear()
        with self._lock:
            self._phone_blocked.clear()

    def armed_scenarios(self) -> dict[str, dict[str, Any]]:
        """{name: {"remaining": n or None, "params": {...}}} for what is still armed."""
        return self._scenarios.snapshot()

    def fire(self, *names: str) -> tuple[str, dict[str, Any]] | None:
        """Consume one occurrence of the earliest armed of `names`: (name, params) or None."""
        return self._scenarios.take(names)

    @property
    def page_variant(self) -> dict[str, Any]:
        """DOM variants of the composer page; {} is the default page."""
        return self._page_variant

    @page_variant.setter
    def page_variant(self, variant: dict[str, Any]) -> None:
        self._page_variant = scenarios.check_page_variant(variant)

    @property
    def session_secret(self) -> str:
        """Signs session cookies and bearer tokens; revoke_sessions() changes it.

        Asset URLs keep the plain secret: like the real signed CDN URLs, they do not depend
        on the session.
        """
        with self._lock:
            revocations = self._revocations
        return self.secret if revocations == 0 else f"{self.secret}#revoked-{revocations}"

    def revoke_sessions(self) -> None:
        """Every session cookie and token issued so far stops working; new ones work."""
        with self._lock:
            self._revocations += 1

    def set_phone_blocked(self, user: str, blocked: bool) -> None:
        with self._lock:
            if blocked:
                self._phone_blocked.add(user)
            else:
                self._phone_blocked.discard(user)

    def is_phone_blocked(self, user: str) -> bool:
        with self._lock:
            return user in self._phone_blocked

    def email_of(self, user: str) -> str:
        with self._lock:
            return self._emails.get(user, f"{user}@example.com")

    def remember_email(self, user: str, email: str) -> None:
        with self._lock:
            self._emails[user] = email

    def record_submission(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.submissions.append(entry)

    def record_full_size_request(self, task_id: str) -> None:
        with self._lock:
            self.full_size_requests[task_id] += 1

    def submissions_snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.submissions)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a browser expects from a real site
    server_version = "sora-standin"
    timeout = 30  # idle keep-alive connections must not hold a thread forever
    # The headers and the body go out in two writes: with Nagle's algorithm on, the second
    # waits for the client's delayed ACK, which added about 40 ms to every request on a
    # reused connection. Real web servers set TCP_NODELAY.
    disable_nagle_algorithm = True

    # Set per request by _dispatch.
    query: dict[str, list[str]]
    body: bytes
    user: str | None
    server_header: str | None  # replaces the Server header (Cloudflare pages)

    @property
    def app(self) -> StandIn:
        return cast("TrackedServer[StandIn]", self.server).app

    # --- plumbing -------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.verbose:
            super().log_message(format, *args)

    def version_string(self) -> str:
        return getattr(self, "server_header", None) or super().version_string()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        try:
            parts = urlsplit(self.path)
            self.query = parse_qs(parts.query)
            # Read the body before anything can fail, or it would poison the kept-alive stream.
            self.body = self._read_body()
            self.user = None
            self.server_header = None
            if parts.path.startswith("/backend/"):
                self.user = self._bearer_user()
                # A valid token refused anyway, as when the site's token expires early.
                if self.app.fire("token_expired"):
                    raise _HTTPError(401, TOKEN_EXPIRED, "token_expired")
            self._route(method, parts.path)
        except _HTTPError as error:
            self._error(error)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser gave up on this request (e.g. an image scrolled away)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._error(_HTTPError(500, "Internal error in the stand-in", "internal_error"))

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise _HTTPError(400, "Invalid Content-Length", "invalid_request")
        if length > MAX_BODY:
            self.close_connection = True
            raise _HTTPError(413, "Request body too large", "payload_too_large")
        return self.rfile.read(length) if length > 0 else b""

    def _route(self, method: str, path: str) -> None:
        allowed = False
        for route_method, pattern, handler in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method == method:
                handler(self, match)
                return
            allowed = True
        if allowed:
            raise _HTTPError(405, f"Method {method} not allowed on {path}", "method_not_allowed")
        raise _HTTPError(404, f"Not found: {path}", "not_found")

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers or []:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> None:
        body = json.dumps(value).encode()
        extra = [("Cache-Control", "no-store"), *(headers or [])]
        self._send(status, body, "application/json", extra)

    def _error(self, error: _HTTPError) -> None:
        shape = {"message": error.message, "type": error.type, "param": error.param}
        body = {"error": {**shape, "code": error.code, **error.extra}, **error.extra}
        self._json(error.status, body)

    def _redirect(self, location: str, status: int = 302, cookies: list[str] | None = None) -> None:
        headers = [("Location", location), ("Cache-Control", "no-store")]
        headers += [("Set-Cookie", cookie) for cookie in cookies or []]
        self._send(status, b"", "text/plain", headers)

    def _json_body(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"null")
        except ValueError:
            raise _HTTPError(400, "Request body is not valid JSON", "invalid_json") from None
        if not isinstance(value, dict):
            raise _HTTPError(400, "Request body must be a JSON object", "invalid_json")
        return value

    def _int_query(self, name: str, default: int, low: int, high: int) -> int:
        text = self.query.get(name, [str(default)])[0]
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise _HTTPError(400, f"{name} must be an integer from {low} to {high}", param=name)
        return value

    # --- authentication -------------------------------------------------------------------

    def _cookies(self) -> dict[str, str]:
        # A plain split: http.cookies drops every cookie after one it cannot parse.
        cookies: dict[str, str] = {}
        for item in (self.headers.get("Cookie") or "").split(";"):
            name, sep, value = item.strip().partition("=")
            if sep:
                cookies.setdefault(name, value)
        return cookies

    def _session(self) -> tuple[str, int] | None:
        cookies = self._cookies()
        for name in (auth.SESSION_COOKIE, auth.LEGACY_SESSION_COOKIE):
            if name in cookies:
                secret = self.app.session_secret
                session = auth.parse_session_value(cookies[name], secret, time.time())
                if session is not None:
                    return session
        return None

    def _bearer_user(self) -> str:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        user = None
        if scheme.lower() == "bearer" and token:
            user = auth.parse_access_token(token.strip(), self.app.session_secret, time.time())
        if user is None:
            raise _HTTPError(401, TOKEN_EXPIRED, "token_expired")
        return user

    def _device_cookie(self) -> list[str]:
        if auth.DEVICE_COOKIE in self._cookies():
            return []
        device = tasks.new_id("did").removeprefix("did_")
        return [f"{auth.DEVICE_COOKIE}={device}; Path=/; Max-Age=31536000; SameSite=Lax"]

    # --- pages ----------------------------------------------------------------------------

    def _cloudflare(self) -> bool:
        """Answer with Cloudflare's challenge (or block) page if that scenario is armed."""
        fired = self.app.fire("cloudflare")
        if fired is None:
            return False
        block = fired[1]["block"]
        ray = secrets.token_hex(8) + "-AMS"
        host = escape(self.headers.get("Host") or "sora.com")
        template = _static_file("cloudflare_block.html" if block else "cloudflare_challenge.html")
        page = (template or b"").decode().replace("{{ray}}", ray).replace("{{host}}", host)
        headers = [
            ("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate"),
            ("CF-RAY", ray),
        ]
        if not block:
            headers.append(("cf-mitigated", "challenge"))
        self.server_header = "cloudflare"
        self._send(403, page.encode(), "text/html; charset=UTF-8", headers)
        return True

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
        # Checked here too: page_variant is a plain dict that tests may edit in place.
        variant = scenarios.check_page_variant(self.app.page_variant)
        body = _static_file("index.html") or b""
        if variant or phone:
            body = _with_page_config(body, {"variant": variant, "phone_verification": phone})
        headers = [("Cache-Control", "no-store")]
        headers += [("Set-Cookie", cookie) for cookie in self._device_cookie()]
        self._send(200, body, STATIC_TYPES[".html"], headers)

    def page_login(self, match: re.Match[str]) -> None:
        self._login_form(200, self.query.get("next", ["/"])[0], "")

    def _login_form(self, status: int, next_path: str, error: str) -> None:
        template = (_static_file("login.html") or b"").decode()
        error_html = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
        page = template.replace("{{next}}", escape(next_path)).replace("{{error}}", error_html)
        self._send(status, page.encode(), STATIC_TYPES[".html"], [("Cache-Control", "no-store")])

    def login_submit(self, match: re.Match[str]) -> None:
        form = parse_qs(self.body.decode("utf-8", "replace"))
        email = form.get("email", [""])[0].strip()
        next_path = form.get("next", ["/"])[0]
        # Only same-site paths: never let the login form redirect elsewhere.
        if not next_path.startswith("/") or next_path.startswith(("//", "/\\")):
            next_path = "/"
        local, at, domain = email.partition("@")
        user = re.sub(r"[^a-z0-9._-]", "-", local.lower()).lstrip("._-")[:64]
        if not at or not domain or not auth.is_valid_user(user):
            self._login_form(400, next_path, "Enter a valid email address.")
            return
        self.app.remember_email(user, email)
        expires = int(time.time() + auth.SESSION_LIFETIME)
        value = auth.make_session_value(user, expires, self.app.session_secret)
        session_cookie = (
            f"{auth.SESSION_COOKIE}={value}; Path=/; Max-Age={int(auth.SESSION_LIFETIME)}; "
            "HttpOnly; Secure; SameSite=Lax"
        )
        self._redirect(next_path, 303, [session_cookie, *self._device_cookie()])

    def static(self, match: re.Match[str]) -> None:
        name = match["name"]
        suffix = name[name.rfind(".") :] if "." in name else ""
        body = _static_file(name) if suffix in STATIC_TYPES else None
        if body is None:
            raise _HTTPError(404, f"Not found: {self.path}", "not_found")
        self._send(200, body, STATIC_TYPES[suffix], [("Cache-Control", "no-cache")])

    def favicon(self, match: re.Match[str]) -> None:
        self._send(204, b"", "image/x-icon")

    # --- API ------------------------------------------------------------------------------

    def api_session(self, match: re.Match[str]) -> None:
        if self._cloudflare():
            return
        session = self._session()
        if session is None:
            self._json(200, None)
            return
        user, expires = session
        email = self.app.email_of(user)
        secret = self.app.session_secret
        token = auth.make_access_token(user, email, expires, secret, time.time())
        self._json(
            200,
            {
                "user": {"id": auth.user_id(user), "name": user, "email": email},
                "expires": tasks.iso(expires),
                "accessToken": token,
            },
        )

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

    def health(self, match: re.Match[str]) -> None:
        self._json(200, {"ok": True})

    def submissions(self, match: re.Match[str]) -> None:
        self._json(200, self.app.submissions_snapshot())

    def config(self, match: re.Match[str]) -> None:
        body = self._json_body()
        if "page" in body:
            try:
                self.app.page_variant = body["page"]
            except ValueError as error:
                raise _HTTPError(400, str(error), "invalid_page_variant", "page") from None
        if "delay" in body:
            delay = body["delay"]
            if type(delay) not in (int, float) or delay < 0:
                raise _HTTPError(400, "delay must be a number >= 0", param="delay")
            self.app.delay = float(delay)
        if "max_concurrent" in body:
            limit = body["max_concurrent"]
            if limit is not None and (type(limit) is not int or limit < 1):
                raise _HTTPError(400, "max_concurrent must be null or >= 1", param="max_concurrent")
            self.app.max_concurrent = limit
        # The page variant is reported by GET /_standin/scenarios: this answer keeps its shape.
        self._json(200, {"delay": self.app.delay, "max_concurrent": self.app.max_concurrent})

    def arm_scenario(self, match: re.Match[str]) -> None:
        body = self._json_body()
        name, count, params = body.get("name"), body.get("count", 1), body.get("params", {})
        if not isinstance(name, str) or not isinstance(params, dict):
            raise _HTTPError(400, "expected {name: string, count, params: object}", "invalid")
        try:
            self.app.scenario(name, count, **params)
        except ValueError as error:
            raise _HTTPError(400, str(error), "invalid_scenario") from None
        self.list_scenarios(match)

    def list_scenarios(self, match: re.Match[str]) -> None:
        armed = self.app.armed_scenarios()
        self._json(200, {"scenarios": armed, "page": self.app.page_variant})

    def clear(self, match: re.Match[str]) -> None:
        self.app.clear_scenarios()
        self.app.page_variant = {}
        self.list_scenarios(match)

    def revoke(self, match: re.Match[str]) -> None:
        self.app.revoke_sessions()
        self._json(200, {"revoked": True})


Handler = Callable[[_Handler, "re.Match[str]"], None]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in [
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
        ("GET", r"/_standin/health", _Handler.health),
        ("GET", r"/_standin/submissions", _Handler.submissions),
        ("POST", r"/_standin/config", _Handler.config),
        ("POST", r"/_standin/scenario", _Handler.arm_scenario),
        ("GET", r"/_standin/scenarios", _Handler.list_scenarios),
        ("POST", r"/_standin/clear", _Handler.clear),
        ("POST", r"/_standin/revoke", _Handler.revoke),
    ]
]

__all__ = ["StandIn", "is_loopback"]

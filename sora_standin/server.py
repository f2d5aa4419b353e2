"""The HTTP side of the stand-in: a ThreadingHTTPServer, its routes and the StandIn facade."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

from . import auth, images, tasks

MAX_BODY = 1 << 20
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
TOKEN_EXPIRED = "Your authentication token has expired. Please try signing in again."
_ASSET_RE = re.compile(
    r"^assets/(?P<task>task_[0-9a-z]+)/(?P<stamp>\d+)_"
    r"(?:src_(?P<png>\d+)\.png|img_(?P<webp>\d+)\.webp|img_(?P<thumb>\d+)_thumb\.webp)$"
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _static_file(name: str) -> bytes | None:
    entry = resources.files(__package__).joinpath("static", name)
    return entry.read_bytes() if entry.is_file() else None


class _HTTPError(Exception):
    """Raised by route code to answer with the API error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.param, self.type = status, code, param, type_
        self.message = message


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: StandIn) -> None:
        self.standin = standin
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    # Connections are tracked so that stop() can cut kept-alive ones: otherwise a browser
    # could go on talking to a "stopped" stand-in through a connection opened before.
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the other side
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up is routine here; anything else deserves a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class StandIn:
    """A local stand-in for the Sora web app, served from a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 2.0,
        secret: str = "standin-secret",
        verbose: bool = False,
    ) -> None:
        # The control endpoints (/_standin/*) have no auth: never expose them beyond loopback.
        if not is_loopback(host):
            raise ValueError(f"refusing to listen on {host!r}: only loopback hosts are allowed")
        self.host, self.port = host, port
        self.delay = delay
        self.secret = secret
        self.verbose = verbose
        # None = no limit. The real site allows about 3 tasks in progress per account.
        self.max_concurrent: int | None = None
        self.submissions: list[dict[str, Any]] = []
        self.tasks = tasks.TaskStore()
        self._lock = threading.Lock()
        self._emails: dict[str, str] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("StandIn is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._httpd.server_address[1]}"

    def start(self) -> StandIn:
        if self._httpd is not None:
            return self
        server_class = _Server6 if ":" in self.host else _Server
        httpd = server_class((self.host, self.port), self)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def storage_state(
        self, user: str = "demo", valid_for: float = auth.SESSION_LIFETIME
    ) -> dict[str, Any]:
        return auth.make_storage_state(self.base_url, user, self.secret, valid_for)

    def email_of(self, user: str) -> str:
        with self._lock:
            return self._emails.get(user, f"{user}@example.com")

    def remember_email(self, user: str, email: str) -> None:
        with self._lock:
            self._emails[user] = email

    def record_submission(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.submissions.append(entry)

    def submissions_snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.submissions)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a browser expects from a real site
    server_version = "sora-standin"
    timeout = 30  # idle keep-alive connections must not hold a thread forever

    # Set per request by _dispatch.
    query: dict[str, list[str]]
    body: bytes
    user: str | None

    @property
    def app(self) -> StandIn:
        return cast(_Server, self.server).standin

    # --- plumbing -------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.verbose:
            super().log_message(format, *args)

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
            if parts.path.startswith("/backend/"):
                self.user = self._bearer_user()
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
        self._json(error.status, {"error": {**shape, "code": error.code}})

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
                session = auth.parse_session_value(cookies[name], self.app.secret, time.time())
                if session is not None:
                    return session
        return None

    def _bearer_user(self) -> str:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        user = None
        if scheme.lower() == "bearer" and token:
            user = auth.parse_access_token(token.strip(), self.app.secret, time.time())
        if user is None:
            raise _HTTPError(401, TOKEN_EXPIRED, "token_expired")
        return user

    def _device_cookie(self) -> list[str]:
        if auth.DEVICE_COOKIE in self._cookies():
            return []
        device = tasks.new_id("did").removeprefix("did_")
        return [f"{auth.DEVICE_COOKIE}={device}; Path=/; Max-Age=31536000; SameSite=Lax"]

    # --- pages ----------------------------------------------------------------------------

    def page_index(self, match: re.Match[str]) -> None:
        if self._session() is None:
            self._redirect("/login?next=/")
            return
        body = _static_file("index.html") or b""
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
        value = auth.make_session_value(user, expires, self.app.secret)
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
        session = self._session()
        if session is None:
            self._json(200, None)
            return
        user, expires = session
        email = self.app.email_of(user)
        token = auth.make_access_token(user, email, expires, self.app.secret, time.time())
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
        now = time.time()
        limit = self.app.max_concurrent
        if limit is not None and self.app.tasks.active_count(self.user, now) >= limit:
            message = f"You already have {limit} generations in progress. Please wait."
            raise _HTTPError(429, message, "too_many_concurrent_tasks")
        task = self.app.tasks.create(
            self.user,
            prompt,
            n_variants,
            size["width"],
            size["height"],
            kind,
            self.app.delay,
            now,
        )
        self.app.record_submission({**body, "task_id": task.id, "at": now})
        self._json(200, {"id": task.id, "priority": 1})

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
        kind: images.Kind = "png" if parsed["png"] else "webp" if parsed["webp"] else "thumb"
        index = int(parsed["png"] or parsed["webp"] or parsed["thumb"])
        if index >= task.n_variants or task.status(time.time()) != "succeeded":
            raise _HTTPError(404, "No such asset", "not_found")
        data = images.render(task.prompt, index, task.output_size, kind)
        content_type = "image/png" if kind == "png" else "image/webp"
        self._send(200, data, content_type, [("Cache-Control", "private, max-age=86400")])

    # --- control endpoints (tests, bench, demo) ---------------------------------------------

    def health(self, match: re.Match[str]) -> None:
        self._json(200, {"ok": True})

    def submissions(self, match: re.Match[str]) -> None:
        self._json(200, self.app.submissions_snapshot())

    def config(self, match: re.Match[str]) -> None:
        body = self._json_body()
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
        self._json(200, {"delay": self.app.delay, "max_concurrent": self.app.max_concurrent})


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
    ]
]

__all__ = ["StandIn", "is_loopback"]

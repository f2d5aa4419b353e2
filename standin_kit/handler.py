"""The request handler of a web site's stand-in: the plumbing both sites answer alike.

SiteHandler reads the body first (an unread body would poison the kept-alive stream), routes
by a table of (method, pattern, handler), answers JSON, redirects, static files, the login form
of manual demos and the control routes that arm scenarios. What a site says its own way is
left to its subclass:

- its error shape: the site's HTTPError subclass renders its own body(), and refusal() makes
  one for a refusal of the plumbing (a bad body, a wrong scenario);
- the words of the plumbing's refusals (NOT_FOUND, ...), as class attributes;
- gate(path): the checks before routing (a bearer token, a challenge page);
- new_device_id(): its device cookie's value;
- SITE_HOST and its Cloudflare pages' names (CHALLENGE_PAGE, BLOCK_PAGE), as class attributes.

Shared helpers of the sites' own routes: page_config() (a page variant handed to app.js),
bearer_user(), session_body() (what the session endpoint answers) and _cloudflare().
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from html import escape
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any, ClassVar, Generic, TypeVar, cast
from urllib.parse import parse_qs, urlsplit

from . import sessions
from .serving import TrackedServer
from .site import SiteStandIn

MAX_BODY = 1 << 20
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
NO_STORE = ("Cache-Control", "no-store")

SiteT = TypeVar("SiteT", bound=SiteStandIn)
Handler = Callable[[Any, re.Match[str]], None]
Route = tuple[str, re.Pattern[str], Handler]


def page_config(page: bytes, config: dict[str, Any], anchor: bytes) -> bytes:
    """A site's index.html with a JSON config, put before ``anchor``, that its app.js reads
    before building the page."""
    # "<" escaped so that no value can close the script element early.
    data = json.dumps(config).replace("<", "\\u003c")
    tag = f'<script id="standin-page" type="application/json">{data}</script>\n  '
    return page.replace(anchor, tag.encode() + anchor, 1)


def route_table(table: Sequence[tuple[str, str, Handler]]) -> list[Route]:
    """The route table with its patterns compiled; a pattern must match the whole path."""
    return [(method, re.compile(pattern), handler) for method, pattern, handler in table]


class HTTPError(Exception):
    """An answer other than 2xx, raised by route code. Each site subclasses it with its own
    error shape: body() is the JSON answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def body(self) -> Any:
        raise NotImplementedError


class SiteHandler(BaseHTTPRequestHandler, Generic[SiteT]):
    protocol_version = "HTTP/1.1"  # keep-alive, like a browser expects from a real site
    timeout = 30  # idle keep-alive connections must not hold a thread forever
    # The headers and the body go out in two writes: with Nagle's algorithm on, the second
    # waits for the client's delayed ACK, which added about 40 ms to every request on a
    # reused connection. Real web servers set TCP_NODELAY.
    disable_nagle_algorithm = True

    # Set by the site's module, once its handlers are defined.
    routes: ClassVar[Sequence[Route]] = ()
    static_package: ClassVar[str] = ""  # the package whose static/ folder is served

    # The plumbing's refusals in the site's words; {method} and {path} are filled in.
    NOT_FOUND: ClassVar[str] = "Not found: {path}"
    NOT_ALLOWED: ClassVar[str] = "Method {method} not allowed on {path}"
    BAD_LENGTH: ClassVar[str] = "Invalid Content-Length"
    TOO_LARGE: ClassVar[str] = "Request body too large"
    QUERY_STATUS: ClassVar[int] = 400  # a query parameter out of range

    # Cloudflare's pages: the host they name when the request has none, their static files.
    SITE_HOST: ClassVar[str] = "localhost"
    CHALLENGE_PAGE: ClassVar[str] = "cloudflare_challenge.html"
    BLOCK_PAGE: ClassVar[str] = "cloudflare_block.html"

    # Set per request by _dispatch.
    query: dict[str, list[str]]
    body: bytes
    user: str | None  # the bearer's user, set by gate() on the API's paths
    server_header: str | None  # replaces the Server header (Cloudflare pages)

    @property
    def app(self) -> SiteT:
        return cast("TrackedServer[SiteT]", self.server).app

    # --- what the site says its own way ---------------------------------------------------

    def refusal(
        self, status: int, message: str, code: str | None = None, param: str | None = None
    ) -> HTTPError:
        """The site's error for a refusal of the shared code (`code`, `param` if it has them)."""
        raise NotImplementedError

    def gate(self, path: str) -> bool:
        """Checks before routing; True when they answered already (a challenge page)."""
        return False

    def new_device_id(self) -> str:
        raise NotImplementedError

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
            if not self.gate(parts.path):
                self._route(method, parts.path)
        except HTTPError as error:
            self._json(error.status, error.body())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser gave up on this request (e.g. an image scrolled away)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            internal = self.refusal(500, "Internal error in the stand-in", "internal_error")
            self._json(internal.status, internal.body())

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise self.refusal(400, self.BAD_LENGTH, "invalid_request")
        if length > MAX_BODY:
            self.close_connection = True
            raise self.refusal(413, self.TOO_LARGE, "payload_too_large")
        return self.rfile.read(length) if length > 0 else b""

    def _route(self, method: str, path: str) -> None:
        allowed = False
        for route_method, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method == method:
                handler(self, match)
                return
            allowed = True
        if allowed:
            message = self.NOT_ALLOWED.format(method=method, path=path)
            raise self.refusal(405, message, "method_not_allowed")
        raise self.refusal(404, self.NOT_FOUND.format(method=method, path=path), "not_found")

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
        self._send(status, body, "application/json", [NO_STORE, *(headers or [])])

    def _redirect(self, location: str, status: int = 302, cookies: list[str] | None = None) -> None:
        headers = [("Location", location), NO_STORE]
        headers += [("Set-Cookie", cookie) for cookie in cookies or []]
        self._send(status, b"", "text/plain", headers)

    def _json_body(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"null")
        except ValueError:
            raise self.refusal(400, "Request body is not valid JSON", "invalid_json") from None
        if not isinstance(value, dict):
            raise self.refusal(400, "Request body must be a JSON object", "invalid_json")
        return value

    def _int_query(self, name: str, default: int, low: int, high: int) -> int:
        text = self.query.get(name, [str(default)])[0]
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            message = f"{name} must be an integer from {low} to {high}"
            raise self.refusal(self.QUERY_STATUS, message, param=name)
        return value

    def _static_file(self, name: str) -> bytes | None:
        entry = resources.files(self.static_package).joinpath("static", name)
        return entry.read_bytes() if entry.is_file() else None

    # --- cookies --------------------------------------------------------------------------

    def _cookies(self) -> dict[str, str]:
        # A plain split: http.cookies drops every cookie after one it cannot parse.
        cookies: dict[str, str] = {}
        for item in (self.headers.get("Cookie") or "").split(";"):
            name, sep, value = item.strip().partition("=")
            if sep:
                cookies.setdefault(name, value)
        return cookies

    def _device_cookie(self) -> list[str]:
        """The device cookie to set: none if the browser has one already."""
        if sessions.DEVICE_COOKIE in self._cookies():
            return []
        device = self.new_device_id()
        return [f"{sessions.DEVICE_COOKIE}={device}; Path=/; Max-Age=31536000; SameSite=Lax"]

    # --- the session ----------------------------------------------------------------------

    def bearer_user(self) -> str | None:
        """The user of the request's bearer token; None without one, or when it is not
        genuine or has expired (``bearer_token`` tells the two apart)."""
        token = self.bearer_token()
        if not token:
            return None
        return sessions.parse_access_token(token, self.app.session_secret, time.time())

    def bearer_token(self) -> str:
        """The token of the request's ``Authorization: Bearer`` header ("" without one)."""
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def session_body(self, user: str, expires: int) -> dict[str, Any]:
        """What the session endpoint answers a logged-in browser (NextAuth's shape): the
        user, when the session ends, and a fresh bearer token."""
        email = self.app.email_of(user)
        secret = self.app.session_secret
        return {
            "user": {"id": sessions.user_id(user), "name": user, "email": email},
            "expires": sessions.iso(expires),
            "accessToken": sessions.make_access_token(user, email, expires, secret, time.time()),
        }

    # --- pages ----------------------------------------------------------------------------

    def _cloudflare(self) -> bool:
        """Answer with Cloudflare's challenge (or block) page if that scenario is armed."""
        fired = self.app.fire("cloudflare")
        if fired is None:
            return False
        block = bool(fired[1].get("block", False))
        ray = secrets.token_hex(8) + "-AMS"
        host = escape(self.headers.get("Host") or self.SITE_HOST)
        template = self._static_file(self.BLOCK_PAGE if block else self.CHALLENGE_PAGE)
        page = (template or b"").decode().replace("{{ray}}", ray).replace("{{host}}", host)
        self._send_cloudflare(page, ray, challenge=not block)
        return True

    def _send_cloudflare(self, page: str, ray: str, challenge: bool) -> None:
        """Cloudflare's 403 page: a challenge (`cf-mitigated`) or a block."""
        headers = [
            ("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate"),
            ("CF-RAY", ray),
        ]
        if challenge:
            headers.append(("cf-mitigated", "challenge"))
        self.server_header = "cloudflare"
        self._send(403, page.encode(), "text/html; charset=UTF-8", headers)

    def page_login(self, match: re.Match[str]) -> None:
        self._login_form(200, self.query.get("next", ["/"])[0], "")

    def _login_form(self, status: int, next_path: str, error: str) -> None:
        template = (self._static_file("login.html") or b"").decode()
        error_html = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
        page = template.replace("{{next}}", escape(next_path)).replace("{{error}}", error_html)
        self._send(status, page.encode(), STATIC_TYPES[".html"], [NO_STORE])

    def login_submit(self, match: re.Match[str]) -> None:
        """The login form of manual demos: any e-mail address logs in as its local part."""
        form = parse_qs(self.body.decode("utf-8", "replace"))
        email = form.get("email", [""])[0].strip()
        next_path = form.get("next", ["/"])[0]
        # Only same-site paths: never let the login form redirect elsewhere.
        if not next_path.startswith("/") or next_path.startswith(("//", "/\\")):
            next_path = "/"
        local, at, domain = email.partition("@")
        user = re.sub(r"[^a-z0-9._-]", "-", local.lower()).lstrip("._-")[:64]
        if not at or not domain or not sessions.is_valid_user(user):
            self._login_form(400, next_path, "Enter a valid email address.")
            return
        self.app.remember_email(user, email)
        cookie = sessions.session_cookie(user, self.app.session_secret, time.time())
        self._redirect(next_path, 303, [cookie, *self._device_cookie()])

    def static(self, match: re.Match[str]) -> None:
        name = match["name"]
        suffix = name[name.rfind(".") :] if "." in name else ""
        body = self._static_file(name) if suffix in STATIC_TYPES else None
        if body is None:
            message = self.NOT_FOUND.format(method="GET", path=self.path)
            raise self.refusal(404, message, "not_found")
        self._send(200, body, STATIC_TYPES[suffix], [("Cache-Control", "no-cache")])

    def favicon(self, match: re.Match[str]) -> None:
        self._send(204, b"", "image/x-icon")

    # --- control routes (tests, bench, demo) ------------------------------------------------

    def health(self, match: re.Match[str]) -> None:
        self._json(200, {"ok": True})

    def _configure(self, body: dict[str, Any]) -> None:
        """The settings both sites take from `POST .../config`: the page variant, the delay."""
        if "page" in body:
            try:
                self.app.page_variant = body["page"]
            except ValueError as error:
                raise self.refusal(400, str(error), "invalid_page_variant", "page") from None
        if "delay" in body:
            delay = body["delay"]
            if type(delay) not in (int, float) or delay < 0:
                raise self.refusal(400, "delay must be a number >= 0", param="delay")
            self.app.delay = float(delay)

    def arm_scenario(self, match: re.Match[str]) -> None:
        body = self._json_body()
        name, count, params = body.get("name"), body.get("count", 1), body.get("params", {})
        if not isinstance(name, str) or not isinstance(params, dict):
            raise self.refusal(400, "expected {name: string, count, params: object}", "invalid")
        try:
            self.app.scenario(name, count, **params)
        except ValueError as error:
            raise self.refusal(400, str(error), "invalid_scenario") from None
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


def control_routes(prefix: str) -> list[tuple[str, str, Handler]]:
    """The control routes both sites have, under `prefix` (the site's own: /_standin, ...)."""
    return [
        ("GET", f"{prefix}/health", SiteHandler.health),
        ("POST", f"{prefix}/scenario", SiteHandler.arm_scenario),
        ("GET", f"{prefix}/scenarios", SiteHandler.list_scenarios),
        ("POST", f"{prefix}/clear", SiteHandler.clear),
        ("POST", f"{prefix}/revoke", SiteHandler.revoke),
    ]

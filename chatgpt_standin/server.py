"""The HTTP side of the ChatGPT stand-in: a ThreadingHTTPServer, its routes, the StandIn facade.

Control endpoints, for tests, the benchmark and the demo (in-process, use StandIn directly):
    GET  /__standin__/health
    GET  /__standin__/log        {"sends": [{"at", "conversation_id", "prompt", "hints", ...}],
                                  "refused": [{"at", "prompt", "status"}], "images_made": n}
    POST /__standin__/config     {"delay": s, "page": {...page variant}}
    POST /__standin__/scenario   {"name": ..., "count": n|null, "params": {...}}
    GET  /__standin__/scenarios  what is armed, how many are left, and the page variant
    POST /__standin__/clear      disarm every scenario and restore the default page
    POST /__standin__/revoke     every session cookie and token issued so far stops working
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from html import escape
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit

from standin_kit import StandInApp, TrackedServer

from . import auth, conversations, prompts, scenarios, stream
from .conversations import ImagePlan

MAX_BODY = 1 << 20
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
SENTINEL_HEADER = "OpenAI-Sentinel-Chat-Requirements-Token"
BUSY_FACTOR = 3  # busy: the image takes this many times the delay
MISSING_TOKEN = "Unauthorized - Access token is missing"
TOKEN_EXPIRED = {
    "code": "token_expired",
    "message": "Your authentication token has expired. Please try signing in again.",
}
DEACTIVATED = {
    "code": "account_deactivated",
    "message": "You do not have an account because it has been deleted or deactivated.",
}
UNUSUAL_ACTIVITY = "Unusual activity has been detected from your device. Try again later."
LIMIT_TEXT = (
    "You've hit the {plan} plan limit for image generations requests. "
    "You can create more images when the limit resets {words}."
)
REFUSAL_TEXT = "I can't assist with that request."
REFUSAL_TITLE = "Request Denied"
BUSY_TEXT = (
    "Lots of people are creating images right now, so this might take a bit. "
    "We'll notify you when your image is ready."
)
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PAGES = {"/": "chat", "/images/": "images"}


def _static_file(name: str) -> bytes | None:
    entry = resources.files(__package__).joinpath("static", name)
    return entry.read_bytes() if entry.is_file() else None


def _with_page_config(page: bytes, config: dict[str, Any]) -> bytes:
    """index.html with a JSON config that app.js reads before building the page."""
    # "<" escaped so that no value can close the script element early.
    data = json.dumps(config).replace("<", "\\u003c")
    tag = f'<script id="standin-page" type="application/json">{data}</script>'
    return page.replace(b"<!--standin-page-->", tag.encode(), 1)


class _HTTPError(Exception):
    """Raised by route code to answer `{"detail": ...}`, the site's error shape."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status, self.detail = status, detail


class StandIn(StandInApp):
    """A local stand-in for the ChatGPT web app, served from a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 1.0,
        secret: str = "standin-secret",
        verbose: bool = False,
    ) -> None:
        super().__init__(host, port, _Handler, join_timeout=5)
        self.delay = delay  # seconds from a send to its final image
        self.secret = secret
        self.verbose = verbose
        self.store = conversations.Store()
        self._scenarios = scenarios.Scenarios()
        self._page_variant: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._sends: list[dict[str, Any]] = []
        self._refused: list[dict[str, Any]] = []
        self._emails: dict[str, str] = {}
        self._revocations = 0

    def storage_state(
        self, user: str = "demo", valid_for: float = auth.SESSION_LIFETIME
    ) -> dict[str, Any]:
        """A Playwright storage_state with a valid session cookie for this stand-in."""
        return auth.make_storage_state(self.base_url, user, self.session_secret, valid_for)

    # --- failure modes and page variants (see scenarios.py) -------------------------------

    def scenario(self, name: str, count: int | None = 1, **params: Any) -> None:
        """Arm a failure mode for the next `count` occurrences (None: until cleared)."""
        self._scenarios.arm(name, count, params)

    def clear_scenarios(self) -> None:
        self._scenarios.clear()

    def armed_scenarios(self) -> dict[str, dict[str, Any]]:
        """{name: {"remaining": n or None, "params": {...}}} for what is still armed."""
        return self._scenarios.snapshot()

    def fire(self, *names: str) -> tuple[str, dict[str, Any]] | None:
        """Consume one occurrence of the earliest armed of `names`: (name, params) or None."""
        return self._scenarios.take(names)

    @property
    def page_variant(self) -> dict[str, Any]:
        """DOM variants of the page; {} is the default page."""
        return self._page_variant

    @page_variant.setter
    def page_variant(self, variant: dict[str, Any]) -> None:
        self._page_variant = scenarios.check_page_variant(variant)

    # --- sessions ---------------------------------------------------------------------------

    @property
    def session_secret(self) -> str:
        """Signs session cookies and tokens; revoke_sessions() changes it (file URLs keep the
        plain secret: they do not depend on the session)."""
        with self._lock:
            revocations = self._revocations
        return self.secret if revocations == 0 else f"{self.secret}#revoked-{revocations}"

    def revoke_sessions(self) -> None:
        with self._lock:
            self._revocations += 1

    def email_of(self, user: str) -> str:
        with self._lock:
            return self._emails.get(user, f"{user}@example.com")

    def remember_email(self, user: str, email: str) -> None:
        with self._lock:
            self._emails[user] = email

    # --- what happened ----------------------------------------------------------------------

    def record_send(self, entry: dict[str, Any], refused: bool = False) -> None:
        with self._lock:
            (self._refused if refused else self._sends).append(entry)

    def log(self) -> dict[str, Any]:
        """{"sends": [...], "refused": [...], "images_made": n}.

        `sends`: every send the site answered (a stream), in order: at, conversation_id,
        prompt, hints, answer ("image", "text", "limit", "refusal", "text_only").
        `refused`: the sends answered 429 instead (at, prompt, status).
        """
        with self._lock:
            sends = [dict(entry) for entry in self._sends]
            refused = [dict(entry) for entry in self._refused]
        now = time.time()
        return {"sends": sends, "refused": refused, "images_made": self.store.images_made(now)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a browser expects from a real site
    server_version = "chatgpt-standin"
    timeout = 30  # idle keep-alive connections must not hold a thread forever
    disable_nagle_algorithm = True  # see sora_standin: headers and body in two writes

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
            if parts.path.startswith("/backend-api/"):
                if self._cloudflare():
                    return
                if parts.path != "/backend-api/estuary/content":  # cookie-gated instead
                    self.user = self._backend_user()
            self._route(method, parts.path)
        except _HTTPError as error:
            self._json(error.status, {"detail": error.detail})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser gave up on this request
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._json(500, {"detail": "Internal error in the stand-in"})

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise _HTTPError(413 if length > 0 else 400, "Invalid request body")
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
        raise _HTTPError(405 if allowed else 404, "Method Not Allowed" if allowed else "Not Found")

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

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json", [_NO_STORE])

    def _redirect(self, location: str, status: int = 302, cookies: list[str] | None = None) -> None:
        headers = [("Location", location), _NO_STORE]
        headers += [("Set-Cookie", cookie) for cookie in cookies or []]
        self._send(status, b"", "text/plain", headers)

    def _json_body(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"null")
        except ValueError:
            raise _HTTPError(400, "Request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise _HTTPError(400, "Request body must be a JSON object")
        return value

    def _origin(self) -> str:
        """The site's origin as this client named it: file URLs must match its cookies."""
        host = self.headers.get("Host") or urlsplit(self.app.base_url).netloc
        return f"http://{host}"

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
        """(user, expiry) of the session cookie; None without one, or when logged_out fires."""
        value = self._cookies().get(auth.SESSION_COOKIE)
        if value is None:
            return None
        session = auth.parse_session_value(value, self.app.session_secret, time.time())
        if session is None or self.app.fire("logged_out"):
            return None
        return session

    def _backend_user(self) -> str:
        """The bearer's user, or the site's refusal (scenarios first, as the site's edge)."""
        if self.app.fire("logged_out"):
            raise _HTTPError(401, MISSING_TOKEN)
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _HTTPError(401, MISSING_TOKEN)
        user = auth.parse_access_token(token.strip(), self.app.session_secret, time.time())
        if user is None:
            raise _HTTPError(401, TOKEN_EXPIRED)
        if self.app.fire("suspended"):
            raise _HTTPError(403, DEACTIVATED)
        if self.app.fire("token_expired"):
            raise _HTTPError(401, TOKEN_EXPIRED)
        return user

    def _device_cookie(self) -> list[str]:
        if auth.DEVICE_COOKIE in self._cookies():
            return []
        return [f"{auth.DEVICE_COOKIE}={uuid.uuid4()}; Path=/; Max-Age=31536000; SameSite=Lax"]

    # --- pages ----------------------------------------------------------------------------

    def _cloudflare(self) -> bool:
        """Answer with Cloudflare's challenge page if that scenario is armed."""
        if self.app.fire("cloudflare") is None:
            return False
        ray = secrets.token_hex(8)
        host = escape(self.headers.get("Host") or "chatgpt.com")
        template = (_static_file("challenge.html") or b"").decode()
        page = template.replace("{{ray}}", ray).replace("{{host}}", host)
        headers = [
            ("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate"),
            ("CF-RAY", f"{ray}-AMS"),
            ("cf-mitigated", "challenge"),
        ]
        self.server_header = "cloudflare"
        self._send(403, page.encode(), "text/html; charset=UTF-8", headers)
        return True

    def page_shell(self, match: re.Match[str]) -> None:
        """The one HTML shell: app.js builds the page (and finds out if a session exists)."""
        if self._cloudflare():
            return
        path = urlsplit(self.path).path
        # Checked here too: page_variant is a plain dict that tests may edit in place.
        variant = scenarios.check_page_variant(self.app.page_variant)
        config = {"variant": variant, "workspace": _PAGES.get(path, "chat")}
        body = _with_page_config(_static_file("index.html") or b"", config)
        headers = [_NO_STORE, *(("Set-Cookie", c) for c in self._device_cookie())]
        self._send(200, body, STATIC_TYPES[".html"], headers)

    def images_slash(self, match: re.Match[str]) -> None:
        self._redirect("/images/", 308)

    def page_login(self, match: re.Match[str]) -> None:
        self._login_form(200, self.query.get("next", ["/"])[0], "")

    def _login_form(self, status: int, next_path: str, error: str) -> None:
        template = (_static_file("login.html") or b"").decode()
        error_html = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
        page = template.replace("{{next}}", escape(next_path)).replace("{{error}}", error_html)
        self._send(status, page.encode(), STATIC_TYPES[".html"], [_NO_STORE])

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
        cookie = (
            f"{auth.SESSION_COOKIE}={value}; Path=/; Max-Age={int(auth.SESSION_LIFETIME)}; "
            "HttpOnly; Secure; SameSite=Lax"
        )
        self._redirect(next_path, 303, [cookie, *self._device_cookie()])

    def static(self, match: re.Match[str]) -> None:
        name = match["name"]
        suffix = name[name.rfind(".") :] if "." in name else ""
        body = _static_file(name) if suffix in STATIC_TYPES else None
        if body is None:
            raise _HTTPError(404, "Not Found")
        self._send(200, body, STATIC_TYPES[suffix], [("Cache-Control", "no-cache")])

    def favicon(self, match: re.Match[str]) -> None:
        self._send(204, b"", "image/x-icon")

    def challenge_script(self, match: re.Match[str]) -> None:
        # Named by the challenge page; the real one runs Cloudflare's checks.
        self._send(200, b"/* challenge platform */\n", STATIC_TYPES[".js"], [_NO_STORE])

    # --- API: session and sending -----------------------------------------------------------

    def api_session(self, match: re.Match[str]) -> None:
        if self._cloudflare():
            return
        session = self._session()
        if session is None:
            self._json(200, {})
            return
        user, expires = session
        email = self.app.email_of(user)
        token = auth.make_access_token(user, email, expires, self.app.session_secret, time.time())
        self._json(
            200,
            {
                "user": {"id": auth.user_id(user), "name": user, "email": email},
                "expires": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(expires)),
                "accessToken": token,
                "authProvider": "openai",
            },
        )

    def chat_requirements(self, match: re.Match[str]) -> None:
        assert self.user is not None
        token = auth.make_sentinel_token(self.user, self.app.session_secret, time.time())
        self._json(
            200,
            {
                "persona": "chatgpt-paid",
                "token": token,
                "proofofwork": {"required": False},
                "turnstile": {"required": False},
            },
        )

    def conversation_post(self, match: re.Match[str]) -> None:
        assert self.user is not None
        now = time.time()
        sentinel = self.headers.get(SENTINEL_HEADER) or ""
        if not auth.check_sentinel_token(sentinel, self.user, self.app.session_secret, now):
            raise _HTTPError(403, UNUSUAL_ACTIVITY)
        text, message_id, hints, conversation_id = _read_send(self._json_body())
        if self.app.fire("http_429"):
            self.app.record_send({"at": now, "prompt": text, "status": 429}, refused=True)
            raise _HTTPError(429, "Too many requests")
        answer_text, image, title, kind = self._decide(text, hints)
        try:
            sent = self.app.store.send(
                self.user, conversation_id, message_id, text, hints, answer_text, image, title, now
            )
        except KeyError:
            raise _HTTPError(404, f"Can't load conversation {conversation_id}") from None
        entry = {"at": now, "conversation_id": sent.conversation.id, "prompt": text}
        self.app.record_send({**entry, "hints": hints, "answer": kind})
        self._stream(stream.events(sent, now))

    def _decide(self, text: str, hints: list[str]) -> tuple[str | None, ImagePlan | None, str, str]:
        """(answer text, image plan, title, kind) of a send, scenarios applied."""
        title = prompts.title(text)
        wants_image = prompts.asks_for_image(text, hints)
        among = scenarios.SEND_ANSWERS + (scenarios.IMAGE_ANSWERS if wants_image else ())
        fired = self.app.fire(*among)
        if fired is not None:
            name, params = fired
            if name == "limit":
                return LIMIT_TEXT.format(**params), None, title, name
            if name == "refusal":
                return REFUSAL_TEXT, None, REFUSAL_TITLE, name
            description = f"Here is a description of {prompts.subject(text)}: " + _DESCRIPTION
            return description, None, title, name
        if not wants_image:
            return f"Here is my answer to “{text[:80]}”. " + _CHAT_ANSWER, None, title, "text"
        outcome, params = self.app.fire(*scenarios.IMAGE_OUTCOMES) or (None, {})
        busy = self.app.fire("busy") is not None
        slow = self.app.fire("slow_image")
        plan = ImagePlan(
            prompt=text,
            title=title,
            size=prompts.image_size(text),
            count=prompts.image_count(text),
            total=self.app.delay * (BUSY_FACTOR if busy else 1),
            slow=slow[1]["seconds"] if slow else None,
            outcome=outcome,
            withdraw_after=params.get("after", 0.5),
        )
        return (BUSY_TEXT if busy else None), plan, title, "image"

    def _stream(self, events: Iterable[stream.Event]) -> None:
        """Write the event stream in HTTP chunks, pausing as the model "types"."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for name, data, pause in events:
            chunk = stream.encode(name, data)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
            # One wait on an event rather than a sleep: stop() ends it at once.
            if pause and self.app.stopping.wait(pause):
                self.close_connection = True
                return
        self.wfile.write(b"0\r\n\r\n")

    # --- API: reading -----------------------------------------------------------------------

    def conversation_get(self, match: re.Match[str]) -> None:
        assert self.user is not None
        conversation = self.app.store.get(self.user, match["id"])
        if conversation is None:
            raise _HTTPError(404, f"Can't load conversation {match['id']}")
        self._json(200, conversations.conversation_json(conversation, time.time()))

    def conversation_list(self, match: re.Match[str]) -> None:
        assert self.user is not None
        offset = self._int_query("offset", 0, 0, 10_000)
        limit = self._int_query("limit", 28, 1, 100)
        now = time.time()
        mine = self.app.store.listing(self.user, now)
        items = [
            {
                "id": c.id,
                "title": c.title,
                "create_time": _iso(c.created),
                "update_time": _iso(c.update_time(now)),
                "is_archived": False,
            }
            for c in mine[offset : offset + limit]
        ]
        body = {"items": items, "total": len(mine), "limit": limit, "offset": offset}
        self._json(200, {**body, "has_missing_conversations": False})

    def recent_images(self, match: re.Match[str]) -> None:
        """The Images workspace's library: every final image, newest first."""
        assert self.user is not None
        limit = self._int_query("limit", 25, 1, 100)
        items = []
        for conversation, node, index in self.app.store.recent_images(self.user, time.time()):
            assert node.job is not None
            file_id = node.job.final_ids[index]
            width, height = node.job.plan.size
            items.append(
                {
                    "id": node.job.gen_ids[index],
                    "title": node.job.plan.title,
                    "url": self._download_url(file_id),
                    "width": width,
                    "height": height,
                    "conversation_id": conversation.id,
                    "message_id": node.id,
                    "asset_pointer": f"sediment://{file_id}",
                    "created_at": _iso(node.job.final_at),
                }
            )
        self._json(200, {"items": items[:limit], "cursor": None})

    def _int_query(self, name: str, default: int, low: int, high: int) -> int:
        text = self.query.get(name, [str(default)])[0]
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise _HTTPError(422, f"{name} must be an integer from {low} to {high}")
        return value

    # --- files ------------------------------------------------------------------------------

    def _download_url(self, file_id: str) -> str:
        sig = auth.file_signature(file_id, self.app.secret)
        return f"{self._origin()}/backend-api/estuary/content?id={quote(file_id)}&sig={sig}"

    def file_download(self, match: re.Match[str]) -> None:
        assert self.user is not None
        file_id = match["file_id"]
        ref = self.app.store.file(file_id)
        mine = ref is not None and ref.user == self.user
        if ref is None or not mine or not ref.job.file_available(ref.kind, time.time()):
            self._json(404, {"status": "error", "error_code": "file_not_found"})
            return
        data = conversations.file_bytes(ref.job, ref.index, ref.kind)
        ext = "png" if ref.kind == "final" else "jpg"
        self._json(
            200,
            {
                "status": "success",
                "download_url": self._download_url(file_id),
                "file_name": f"{ref.job.plan.title or 'image'}.{ext}",
                "file_size_bytes": len(data),
                "metadata": {},
            },
        )

    def estuary(self, match: re.Match[str]) -> None:
        file_id, sig = (self.query.get(key, [""])[0] for key in ("id", "sig"))
        if self._session() is None:
            raise _HTTPError(403, "Forbidden")
        if not auth.check_file_signature(file_id, sig, self.app.secret):
            raise _HTTPError(403, "Forbidden")
        ref = self.app.store.file(file_id)
        if ref is None or not ref.job.file_available(ref.kind, time.time()):
            raise _HTTPError(404, "Not Found")
        data = conversations.file_bytes(ref.job, ref.index, ref.kind)
        content_type = "image/png" if ref.kind == "final" else "image/jpeg"
        self._send(200, data, content_type, [("Cache-Control", "private, max-age=3600")])

    # --- control endpoints (tests, bench, demo) ---------------------------------------------

    def health(self, match: re.Match[str]) -> None:
        self._json(200, {"ok": True})

    def send_log(self, match: re.Match[str]) -> None:
        self._json(200, self.app.log())

    def config(self, match: re.Match[str]) -> None:
        body = self._json_body()
        if "page" in body:
            try:
                self.app.page_variant = body["page"]
            except ValueError as error:
                raise _HTTPError(400, str(error)) from None
        if "delay" in body:
            delay = body["delay"]
            if type(delay) not in (int, float) or delay < 0:
                raise _HTTPError(400, "delay must be a number >= 0")
            self.app.delay = float(delay)
        self._json(200, {"delay": self.app.delay, "page": self.app.page_variant})

    def arm_scenario(self, match: re.Match[str]) -> None:
        body = self._json_body()
        name, count, params = body.get("name"), body.get("count", 1), body.get("params", {})
        if not isinstance(name, str) or not isinstance(params, dict):
            raise _HTTPError(400, "expected {name: string, count, params: object}")
        try:
            self.app.scenario(name, count, **params)
        except ValueError as error:
            raise _HTTPError(400, str(error)) from None
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


_NO_STORE = ("Cache-Control", "no-store")
_CHAT_ANSWER = "This is the stand-in of ChatGPT: it answers in words unless asked for an image."
_DESCRIPTION = (
    "soft morning light, a calm palette of blues and greens, and a clear subject in the middle "
    "of the frame."
)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def _read_send(body: dict[str, Any]) -> tuple[str, str, list[str], str | None]:
    """(text, message id, system hints, conversation id) of a conversation POST."""
    messages = body.get("messages")
    message = messages[0] if isinstance(messages, list) and messages else None
    if body.get("action", "next") != "next" or not isinstance(message, dict):
        raise _HTTPError(422, "expected action 'next' with one message")
    content = message.get("content") or {}
    parts = content.get("parts") if isinstance(content, dict) else None
    text = parts[0] if isinstance(parts, list) and parts else None
    if not isinstance(text, str) or not text.strip():
        raise _HTTPError(422, "the message has no text")
    metadata = message.get("metadata") or {}
    hints = metadata.get("system_hints") if isinstance(metadata, dict) else None
    hints = hints if isinstance(hints, list) else body.get("system_hints") or []
    if not all(isinstance(hint, str) for hint in hints):
        raise _HTTPError(422, "system_hints must be strings")
    message_id = message.get("id")
    if not isinstance(message_id, str) or not _UUID_RE.match(message_id):
        message_id = str(uuid.uuid4())
    conversation_id = body.get("conversation_id")
    if conversation_id is not None and not isinstance(conversation_id, str):
        raise _HTTPError(422, "conversation_id must be a string")
    return text, message_id, list(hints), conversation_id


Handler = Callable[[_Handler, "re.Match[str]"], None]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in [
        ("GET", r"/", _Handler.page_shell),
        ("GET", r"/c/[0-9a-f-]{36}", _Handler.page_shell),
        ("GET", r"/images/", _Handler.page_shell),
        ("GET", r"/images", _Handler.images_slash),
        ("GET", r"/auth/login", _Handler.page_login),
        ("POST", r"/auth/login", _Handler.login_submit),
        ("GET", r"/static/(?P<name>[A-Za-z0-9_-]+\.[a-z]+)", _Handler.static),
        ("GET", r"/favicon\.ico", _Handler.favicon),
        ("GET", r"/cdn-cgi/challenge-platform/.*", _Handler.challenge_script),
        ("GET", r"/api/auth/session", _Handler.api_session),
        ("POST", r"/backend-api/sentinel/chat-requirements", _Handler.chat_requirements),
        ("POST", r"/backend-api/f/conversation", _Handler.conversation_post),
        ("POST", r"/backend-api/conversation", _Handler.conversation_post),  # older path
        ("GET", r"/backend-api/conversation/(?P<id>[0-9a-f-]{36})", _Handler.conversation_get),
        ("GET", r"/backend-api/conversations", _Handler.conversation_list),
        ("GET", r"/backend-api/my/recent/image_gen", _Handler.recent_images),
        ("GET", r"/backend-api/files/download/(?P<file_id>file_[0-9a-f]+)", _Handler.file_download),
        ("GET", r"/backend-api/estuary/content", _Handler.estuary),
        ("GET", r"/__standin__/health", _Handler.health),
        ("GET", r"/__standin__/log", _Handler.send_log),
        ("POST", r"/__standin__/config", _Handler.config),
        ("POST", r"/__standin__/scenario", _Handler.arm_scenario),
        ("GET", r"/__standin__/scenarios", _Handler.list_scenarios),
        ("POST", r"/__standin__/clear", _Handler.clear),
        ("POST", r"/__standin__/revoke", _Handler.revoke),
    ]
]

__all__ = ["StandIn"]

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

import re
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from standin_kit import sessions
from standin_kit.handler import (
    NO_STORE,
    STATIC_TYPES,
    HTTPError,
    SiteHandler,
    control_routes,
    page_config,
    route_table,
)
from standin_kit.site import SiteStandIn

from . import auth, conversations, prompts, scenarios, stream
from .conversations import ImagePlan

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
PAGE_CONFIG_ANCHOR = b"<!--standin-page-->"  # in index.html: the page variant goes there


class _HTTPError(HTTPError):
    """Raised by route code to answer `{"detail": ...}`, the site's error shape."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(status, str(detail))
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}


class StandIn(SiteStandIn):
    """A local stand-in for the ChatGPT web app, served from a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 1.0,
        secret: str = "standin-secret",
        verbose: bool = False,
    ) -> None:
        super().__init__(
            host,
            port,
            _Handler,
            scenarios=scenarios.Scenarios(),
            page_variants=scenarios.PAGE_VARIANTS,
            delay=delay,  # seconds from a send to its final image
            secret=secret,
            verbose=verbose,
        )
        self.store = conversations.Store()
        self._sends: list[dict[str, Any]] = []
        self._refused: list[dict[str, Any]] = []

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


class _Handler(SiteHandler[StandIn]):
    server_version = "chatgpt-standin"
    static_package = "chatgpt_standin"
    # The site's words, FastAPI's.
    NOT_FOUND = "Not Found"
    NOT_ALLOWED = "Method Not Allowed"
    BAD_LENGTH = TOO_LARGE = "Invalid request body"
    QUERY_STATUS = 422
    SITE_HOST = "chatgpt.com"
    CHALLENGE_PAGE = "challenge.html"  # no block page: its challenge is all it shows

    def refusal(
        self, status: int, message: str, code: str | None = None, param: str | None = None
    ) -> HTTPError:
        return _HTTPError(status, message)

    def gate(self, path: str) -> bool:
        if path.startswith("/backend-api/"):
            if self._cloudflare():
                return True
            if path != "/backend-api/estuary/content":  # cookie-gated instead
                self.user = self._backend_user()
        return False

    def new_device_id(self) -> str:
        return str(uuid.uuid4())

    def _origin(self) -> str:
        """The site's origin as this client named it: file URLs must match its cookies."""
        host = self.headers.get("Host") or urlsplit(self.app.base_url).netloc
        return f"http://{host}"

    # --- authentication -------------------------------------------------------------------

    def _session(self) -> tuple[str, int] | None:
        """(user, expiry) of the session cookie; None without one, or when logged_out fires."""
        value = self._cookies().get(sessions.SESSION_COOKIE)
        if value is None:
            return None
        session = sessions.parse_session_value(value, self.app.session_secret, time.time())
        if session is None or self.app.fire("logged_out"):
            return None
        return session

    def _backend_user(self) -> str:
        """The bearer's user, or the site's refusal (scenarios first, as the site's edge)."""
        if self.app.fire("logged_out") or not self.bearer_token():
            raise _HTTPError(401, MISSING_TOKEN)
        user = self.bearer_user()
        if user is None:
            raise _HTTPError(401, TOKEN_EXPIRED)
        if self.app.fire("suspended"):
            raise _HTTPError(403, DEACTIVATED)
        if self.app.fire("token_expired"):
            raise _HTTPError(401, TOKEN_EXPIRED)
        return user

    # --- pages ----------------------------------------------------------------------------

    def page_shell(self, match: re.Match[str]) -> None:
        """The one HTML shell: app.js builds the page (and finds out if a session exists)."""
        if self._cloudflare():
            return
        path = urlsplit(self.path).path
        variant = self.app.checked_page_variant()
        config = {"variant": variant, "workspace": _PAGES.get(path, "chat")}
        body = page_config(self._static_file("index.html") or b"", config, PAGE_CONFIG_ANCHOR)
        headers = [NO_STORE, *(("Set-Cookie", c) for c in self._device_cookie())]
        self._send(200, body, STATIC_TYPES[".html"], headers)

    def images_slash(self, match: re.Match[str]) -> None:
        self._redirect("/images/", 308)

    def challenge_script(self, match: re.Match[str]) -> None:
        # Named by the challenge page; the real one runs Cloudflare's checks.
        self._send(200, b"/* challenge platform */\n", STATIC_TYPES[".js"], [NO_STORE])

    # --- API: session and sending -----------------------------------------------------------

    def api_session(self, match: re.Match[str]) -> None:
        if self._cloudflare():
            return
        session = self._session()
        if session is None:
            self._json(200, {})
            return
        self._json(200, {**self.session_body(*session), "authProvider": "openai"})

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
                "create_time": sessions.iso(c.created),
                "update_time": sessions.iso(c.update_time(now)),
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
                    "created_at": sessions.iso(node.job.final_at),
                }
            )
        self._json(200, {"items": items[:limit], "cursor": None})

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

    def send_log(self, match: re.Match[str]) -> None:
        self._json(200, self.app.log())

    def config(self, match: re.Match[str]) -> None:
        self._configure(self._json_body())
        self._json(200, {"delay": self.app.delay, "page": self.app.page_variant})


_CHAT_ANSWER = "This is the stand-in of ChatGPT: it answers in words unless asked for an image."
_DESCRIPTION = (
    "soft morning light, a calm palette of blues and greens, and a clear subject in the middle "
    "of the frame."
)


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


_Handler.routes = route_table(
    [
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
        ("GET", r"/__standin__/log", _Handler.send_log),
        ("POST", r"/__standin__/config", _Handler.config),
        *control_routes("/__standin__"),
    ]
)

__all__ = ["StandIn"]

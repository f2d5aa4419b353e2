"""Who may use the service, and protection against requests forged by other sites.

- With ``SORA_API_TOKEN``: every route but ``/healthz`` and ``/readyz`` needs
  ``Authorization: Bearer <token>``, or the dashboard's cookie, which the login form sets once
  the token is given (HttpOnly, SameSite=Strict, derived from the token: changing the token
  logs everyone out).
- Without it (loopback only, see settings): open to the programs of this machine, but a
  ``Host`` other than a loopback name is refused, so that a web page cannot reach the API
  through DNS rebinding.
- Any request that changes something (POST ...) and comes from another site's page
  (``Sec-Fetch-Site``, ``Origin``) is refused; the dashboard's forms carry a token of their own
  (``csrf_token``) on top.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from sora_watcher.server.context import Context

COOKIE = "sora_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}


def derive(secret: bytes | str, purpose: str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, purpose.encode(), hashlib.sha256).hexdigest()


def session_value(token: str) -> str:
    """The dashboard cookie's value: proves the token was given, without being it."""
    return derive(token, "dashboard session")


def csrf_token(context: Context) -> str:
    return derive(context.secret, "dashboard form")


def bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def has_token(request: Request, context: Context) -> bool:
    """Whether the request may use the API (True when no token is set)."""
    token = context.service.api_token
    if token is None:
        return True
    given = bearer(request)
    if given is not None and hmac.compare_digest(given.encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def host_allowed(request: Request, context: Context) -> bool:
    if context.service.api_token is not None:
        return True  # the token is the guard; any Host may carry it
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    listening = context.service.http
    return name in LOOPBACK_NAMES or (listening is not None and name == listening.host)


def cross_site(request: Request) -> bool:
    """A browser says so: ``Sec-Fetch-Site``, else an ``Origin`` that is not this host."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc != request.headers.get("host", "")


def guard(request: Request, context: Context) -> None:
    """Raise the HTTP error that refuses ``request``, if any (see the module's rules)."""
    if not host_allowed(request, context):
        raise HTTPException(421, "this service answers on 127.0.0.1 or localhost only")
    if request.method not in SAFE_METHODS and cross_site(request):
        raise HTTPException(403, "refused: the request comes from another site")
    if not has_token(request, context):
        raise HTTPException(
            401,
            "missing or wrong token: send Authorization: Bearer <SORA_API_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )


def check_csrf(request: Request, context: Context, given: str | None) -> None:
    """The dashboard's forms: their token, from a field or the ``X-CSRF-Token`` header."""
    given = given or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), csrf_token(context).encode()):
        raise HTTPException(403, "the form is out of date: reload the page and try again")

"""The session of OpenAI's web apps (sora.com, chatgpt.com), as both web stand-ins sign it.

One auth stack serves both real sites: a ``__Secure-next-auth`` session cookie, an ``oai-did``
device cookie, and a short-lived bearer token (a JWT) that the page derives from the session.
Everything here is stateless on purpose, derived from one shared secret: a session file can be
written offline (no server running) and any stand-in started with the same secret accepts it.
What only one site signs (Sora's asset URLs, ChatGPT's sentinel tokens) stays in its auth.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

SESSION_COOKIE = "__Secure-next-auth.session-token"
DEVICE_COOKIE = "oai-did"

SESSION_LIFETIME = 30 * 24 * 3600.0
# Like the real sites, the bearer token lives shorter than the session: the page re-derives it.
ACCESS_TOKEN_LIFETIME = 3600.0

# Names end up inside a cookie value and a JWT, so keep them to a safe alphabet.
_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def is_valid_user(user: str) -> bool:
    return bool(_USER_RE.match(user))


def iso(ts: float) -> str:
    """A Unix time as both sites write times: ISO 8601, UTC, to the microsecond."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def user_id(user: str) -> str:
    """A stable, opaque id shaped like the real ones ("user-" + 24 characters)."""
    return "user-" + hashlib.sha256(f"user:{user}".encode()).hexdigest()[:24]


def sign(secret: str, message: str) -> str:
    """HMAC-SHA256 of `message`, in hex: what every signature of the stand-ins is made of."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


# --- session cookie -------------------------------------------------------------------------


def make_session_value(user: str, expires: int, secret: str) -> str:
    if not is_valid_user(user):
        raise ValueError(f"invalid user name {user!r}: use letters, digits, '.', '_' or '-'")
    return f"{user}.{expires}.{sign(secret, f'{user}.{expires}')}"


def parse_session_value(value: str, secret: str, now: float) -> tuple[str, int] | None:
    """Return (user, expiry) for a genuine, unexpired cookie value; None otherwise."""
    # rsplit: user names may contain dots, the expiry and the signature never do.
    parts = value.rsplit(".", 2)
    if len(parts) != 3:
        return None
    user, expires_text, signature = parts
    if not is_valid_user(user) or not expires_text.isdigit():
        return None
    if not hmac.compare_digest(signature, sign(secret, f"{user}.{expires_text}")):
        return None
    expires = int(expires_text)
    if expires <= now:
        return None
    return user, expires


def session_cookie(user: str, secret: str, now: float) -> str:
    """The Set-Cookie value of a new session, as the login form hands it out."""
    value = make_session_value(user, int(now + SESSION_LIFETIME), secret)
    return (
        f"{SESSION_COOKIE}={value}; Path=/; Max-Age={int(SESSION_LIFETIME)}; "
        "HttpOnly; Secure; SameSite=Lax"
    )


def make_storage_state(
    base_url: str, user: str, secret: str, valid_for: float = SESSION_LIFETIME
) -> dict[str, Any]:
    """A Playwright storage_state holding a session cookie for a stand-in at base_url.

    valid_for may be negative to produce an already expired session (useful in tests).
    """
    domain = urlsplit(base_url).hostname
    if not domain:
        raise ValueError(f"base URL without a host: {base_url!r}")
    expires = int(time.time() + valid_for)
    cookie_common: dict[str, Any] = {"domain": domain, "path": "/", "sameSite": "Lax"}
    return {
        "cookies": [
            {
                "name": SESSION_COOKIE,
                "value": make_session_value(user, expires, secret),
                **cookie_common,
                "expires": float(expires),
                "httpOnly": True,
                "secure": True,
            },
            {
                "name": DEVICE_COOKIE,
                "value": str(uuid.uuid4()),
                **cookie_common,
                "expires": float(int(time.time() + 365 * 24 * 3600)),
                "httpOnly": False,
                "secure": False,
            },
        ],
        "origins": [],
    }


# --- bearer token (JWT-like, HS256) ---------------------------------------------------------


def b64url(data: bytes) -> str:
    """Unpadded URL-safe base64, as JWTs (and the sentinel token) write it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Unpadded URL-safe base64, as JWTs (and the sentinel token) write it."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_access_token(user: str, email: str, session_expires: int, secret: str, now: float) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {
        "sub": user_id(user),
        "name": user,
        "email": email,
        "iat": int(now),
        "exp": int(min(session_expires, now + ACCESS_TOKEN_LIFETIME)),
    }
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def parse_access_token(token: str, secret: str, now: float) -> str | None:
    """Return the user name of a genuine, unexpired token; None otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    signing_input = f"{parts[0]}.{parts[1]}"
    expected = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(b64url_decode(parts[2]), expected):
            return None
        payload = json.loads(b64url_decode(parts[1]))
    except ValueError:  # bad base64 or bad JSON (binascii.Error is a ValueError)
        return None
    if not isinstance(payload, dict):
        return None
    user, exp = payload.get("name"), payload.get("exp")
    if not isinstance(user, str) or not is_valid_user(user) or not isinstance(exp, int):
        return None
    return user if exp > now else None

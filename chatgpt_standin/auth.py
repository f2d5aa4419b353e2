"""Sessions, bearer tokens, sentinel tokens and signed file URLs, all from one shared secret.

Stateless on purpose, as in sora_standin (whose session and token primitives are reused): a
session file can be written offline and any stand-in started with the same secret accepts it.

Chromium treats http://127.0.0.1 and http://localhost as secure origins, so it keeps and sends
the real site's `__Secure-` cookie there too (the tests check it through a cookie-gated image).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from sora_standin.auth import (
    is_valid_user,
    make_access_token,
    make_session_value,
    parse_access_token,
    parse_session_value,
    user_id,
)

SESSION_COOKIE = "__Secure-next-auth.session-token"
DEVICE_COOKIE = "oai-did"
SESSION_LIFETIME = 30 * 24 * 3600.0
# The page fetches a chat-requirements token before each send; it lives a few minutes.
SENTINEL_LIFETIME = 600.0
SENTINEL_PREFIX = "gAAAAAB"

__all__ = [
    "DEVICE_COOKIE",
    "SESSION_COOKIE",
    "SESSION_LIFETIME",
    "check_file_signature",
    "check_sentinel_token",
    "file_signature",
    "is_valid_user",
    "make_access_token",
    "make_sentinel_token",
    "make_session_value",
    "make_storage_state",
    "parse_access_token",
    "parse_session_value",
    "user_id",
]


def _sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


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
    common: dict[str, Any] = {"domain": domain, "path": "/", "sameSite": "Lax"}
    return {
        "cookies": [
            {
                "name": SESSION_COOKIE,
                "value": make_session_value(user, expires, secret),
                **common,
                "expires": float(expires),
                "httpOnly": True,
                "secure": True,
            },
            {
                "name": DEVICE_COOKIE,
                "value": str(uuid.uuid4()),
                **common,
                "expires": float(int(time.time() + 365 * 24 * 3600)),
                "httpOnly": False,
                "secure": False,
            },
        ],
        "origins": [],
    }


# --- sentinel (OpenAI-Sentinel-Chat-Requirements-Token) -------------------------------------


def make_sentinel_token(user: str, secret: str, now: float) -> str:
    """An opaque token bound to the user, as POST /backend-api/sentinel/chat-requirements
    hands it to the page."""
    payload = json.dumps({"u": user, "exp": int(now + SENTINEL_LIFETIME)}, separators=(",", ":"))
    body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()
    return f"{SENTINEL_PREFIX}{body}.{_sign(secret, 'sentinel:' + body)[:32]}"


def check_sentinel_token(token: str, user: str, secret: str, now: float) -> bool:
    body, _, signature = token.removeprefix(SENTINEL_PREFIX).partition(".")
    if not token.startswith(SENTINEL_PREFIX) or not body:
        return False
    if not hmac.compare_digest(signature, _sign(secret, "sentinel:" + body)[:32]):
        return False
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return False
    return (
        isinstance(payload, dict)
        and payload.get("u") == user
        and isinstance(payload.get("exp"), int)
        and payload["exp"] > now
    )


# --- estuary URLs ---------------------------------------------------------------------------


def file_signature(file_id: str, secret: str) -> str:
    """The `sig` of a file's estuary URL; it does not depend on the session (the cookie
    gate does)."""
    return _sign(secret, "estuary:" + file_id)[:40]


def check_file_signature(file_id: str, sig: str, secret: str) -> bool:
    return hmac.compare_digest(sig, file_signature(file_id, secret))

"""ChatGPT's side of the session: sentinel tokens and signed file (estuary) URLs.

The session cookie, the device cookie and the bearer token are OpenAI's, the same for ChatGPT
and Sora: they live in standin_kit.sessions. Stateless on purpose, like them: any stand-in
started with the same secret accepts a token.

Chromium treats http://127.0.0.1 and http://localhost as secure origins, so it keeps and sends
the real site's `__Secure-` cookie there too (the tests check it through a cookie-gated image).
"""

from __future__ import annotations

import hmac
import json

from standin_kit.sessions import b64url, b64url_decode, sign

# The page fetches a chat-requirements token before each send; it lives a few minutes.
SENTINEL_LIFETIME = 600.0
SENTINEL_PREFIX = "gAAAAAB"

# --- sentinel (OpenAI-Sentinel-Chat-Requirements-Token) -------------------------------------


def make_sentinel_token(user: str, secret: str, now: float) -> str:
    """An opaque token bound to the user, as POST /backend-api/sentinel/chat-requirements
    hands it to the page."""
    payload = json.dumps({"u": user, "exp": int(now + SENTINEL_LIFETIME)}, separators=(",", ":"))
    body = b64url(payload.encode())
    return f"{SENTINEL_PREFIX}{body}.{sign(secret, 'sentinel:' + body)[:32]}"


def check_sentinel_token(token: str, user: str, secret: str, now: float) -> bool:
    body, _, signature = token.removeprefix(SENTINEL_PREFIX).partition(".")
    if not token.startswith(SENTINEL_PREFIX) or not body:
        return False
    if not hmac.compare_digest(signature, sign(secret, "sentinel:" + body)[:32]):
        return False
    try:
        payload = json.loads(b64url_decode(body))
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
    return sign(secret, "estuary:" + file_id)[:40]


def check_file_signature(file_id: str, sig: str, secret: str) -> bool:
    return hmac.compare_digest(sig, file_signature(file_id, secret))

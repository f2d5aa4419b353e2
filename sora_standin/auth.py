"""Sora's side of the session: the session cookie's older name, and signed asset URLs.

The session cookie, the device cookie and the bearer token are OpenAI's, the same for Sora and
ChatGPT: they live in standin_kit.sessions. Stateless on purpose, like them: any stand-in
started with the same secret accepts a URL.
"""

from __future__ import annotations

import hmac
import time

from standin_kit.sessions import sign

# Older builds of the real site used this name; sessions saved back then still carry it.
LEGACY_SESSION_COOKIE = "__Secure-authjs.session-token"
ASSET_URL_LIFETIME = 7 * 24 * 3600.0


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def asset_query(asset_path: str, secret: str, now: float) -> str:
    """Query string (st, se, sig) signing an unquoted path like 'assets/task_x/1_src_0.png'.

    The signature covers the validity window too, so se cannot be stretched by the client.
    """
    st, se = _iso(now), _iso(now + ASSET_URL_LIFETIME)
    return f"st={st}&se={se}&sig={sign(secret, f'{asset_path}|{st}|{se}')}"


def check_asset_signature(
    asset_path: str, st: str, se: str, sig: str, secret: str, now: float
) -> bool:
    if not hmac.compare_digest(sig, sign(secret, f"{asset_path}|{st}|{se}")):
        return False
    # ISO-8601 UTC strings of one fixed format compare correctly as text.
    return _iso(now) < se

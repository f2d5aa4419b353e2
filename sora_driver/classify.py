"""Turning what the site answers into named errors, with the site's own words as the detail.

Shared by every web backend: a backend with its own codes (ChatGPT's suspended account)
sorts those first, then leaves the rest to ``api_error``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sora_driver.diagnostics import short_url
from sora_driver.errors import (
    CloudflareChallenge,
    PageError,
    PhoneVerificationRequired,
    SessionExpired,
)
from sora_watcher.errors import (
    ConcurrencyLimited,
    ContentRejected,
    GenerationError,
    Overloaded,
    RateLimited,
    TaskFailed,
)

if TYPE_CHECKING:  # only for the type: a page is read, never driven, here
    from playwright.sync_api import Page

SESSION_CODES = {"token_expired", "token_invalidated", "invalid_jwt", "username_required"}
CHALLENGE_MARKERS = ("Just a moment...", "Attention Required", "cf-challenge", "challenge-platform")
PHONE_MARKERS = ("Verify your phone number",)
LIMIT_TYPES = {"rate_limit_exhausted", "rate_limit_and_credit_balance"}
LIMIT_RETRY_SECONDS = 30.0  # a 429 that does not say when it ends
MIN_RESET_SECONDS = 5.0  # "resets in 0 s" must not become a tight relaunch loop
TRANSIENT_STATUSES = {408, 409, 425}  # timeout, conflict, too early: worth another try


def error_fields(text: str) -> dict[str, Any]:
    """An error answer's fields, flat: Sora nests them in ``error``, ChatGPT in ``detail``
    (``{"detail": {"code": ...}}``, or only words: ``{"detail": "Too many requests"}``)."""
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    fields = dict(body)
    for key in ("error", "detail"):
        inner = body.get(key)
        if isinstance(inner, dict):
            fields.update(inner)
        elif key == "detail" and isinstance(inner, str):
            fields.setdefault("message", inner)
    return fields


def blocked_by(text: str, where: str) -> GenerationError | None:
    """A Cloudflare challenge or a phone verification shown in a page or an answer, if any."""
    for marker in CHALLENGE_MARKERS:
        if marker in text:
            return CloudflareChallenge(f"{where}: the site answered with {marker!r}")
    for marker in PHONE_MARKERS:
        if marker in text:
            return PhoneVerificationRequired(f"{where}: the site says {marker!r}...")
    return None


def check_page_state(page: Page, login_markers: tuple[str, ...]) -> None:
    """A page just loaded: ``SessionExpired`` if the site sent the browser to its login page
    (its address holds one of ``login_markers``), else what ``blocked_by`` finds in it."""
    if any(marker in page.url for marker in login_markers):
        raise SessionExpired(f"the site sent the browser to its login page ({short_url(page.url)})")
    blocked = blocked_by(f"{page.title()}\n{page.content()[:20000]}", short_url(page.url))
    if blocked is not None:
        raise blocked


def api_error(
    status: int, text: str, where: str, unknown_reset: float = LIMIT_RETRY_SECONDS
) -> GenerationError:
    """The error for a non-2xx answer of a ``/backend`` call; ``unknown_reset``: the wait
    for a limit that does not say when it ends (each site knows its own limits)."""
    error = error_fields(text)
    code = str(error.get("code") or "")
    kind = str(error.get("type") or "")
    message = str(error.get("message") or text[:200]).strip()
    detail = f"HTTP {status} on {where}: {message}" + (f" [{code or kind}]" if code or kind else "")
    blocked = None if error else blocked_by(text, f"HTTP {status} on {where}")
    if blocked is not None:
        return blocked
    if code == "phone_verification_required":
        return PhoneVerificationRequired(detail)
    if status == 401 or code in SESSION_CODES:
        return SessionExpired(detail)
    if code == "too_many_concurrent_tasks":
        return ConcurrencyLimited(detail)
    if status == 429 or kind in LIMIT_TYPES:
        resets = error.get("access_resets_in_seconds")
        if isinstance(resets, (int, float)):
            return RateLimited(detail, resume_after=max(float(resets), MIN_RESET_SECONDS))
        return RateLimited(detail, resume_after=unknown_reset)
    if status >= 500 or code == "heavy_load" or status in TRANSIENT_STATUSES:
        return Overloaded(detail)
    if status == 400 and ("policy" in message.lower() or "moderation" in code or "policy" in code):
        return ContentRejected(detail)
    if 400 <= status < 500:
        return TaskFailed(detail)
    return PageError(detail)

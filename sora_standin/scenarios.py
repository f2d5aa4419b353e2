"""Failure modes and page variants of the real site, switched on by tests and demos.

A scenario is armed for the next N occurrences (or until cleared) and consumed as it fires:

    cloudflare           403 challenge page on `GET /` and `/api/auth/session`   block=False
    rate_limit           429 on `POST /backend/video_gen`                 resets_in=3, credit=False
    too_many_concurrent  429 on `POST /backend/video_gen`
    heavy_load           503 on `POST /backend/video_gen`
    unable_to_create     400 content_policy_violation on `POST /backend/video_gen`
    token_expired        401 on any `/backend/*` call (the session cookie stays valid)
    phone_verification   blocking dialog on `GET /`; that user's POSTs get 403 until a reload
    moderation, unsafe_output, task_failed, cancelled, stalled(progress=0.42)
                         how the next tasks end
    webp_source          the next tasks' `url` is a full-size WEBP instead of a PNG
    no_polling           the page stops polling after submitting the next tasks
    slow_cdn             full-size image downloads answer after `seconds` (default 5)
    truncated_image      full-size image downloads send half of the file
    cdn_needs_cookies    full-size image downloads without any cookie answer 403

When several scenarios could fire on one request (two refusals, two task outcomes), only the
one armed first fires; the others wait for the next requests.
"""

from __future__ import annotations

from typing import Any

from standin_kit import Switches

# Each scenario's parameters with their defaults; the default's type is the accepted type.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "cloudflare": {"block": False},
    "rate_limit": {"resets_in": 3, "credit": False},
    "too_many_concurrent": {},
    "heavy_load": {},
    "token_expired": {},
    "unable_to_create": {},
    "moderation": {},
    "unsafe_output": {},
    "task_failed": {},
    "cancelled": {},
    "stalled": {"progress": 0.42},
    "phone_verification": {},
    "slow_cdn": {"seconds": 5.0},
    "truncated_image": {},
    "cdn_needs_cookies": {},
    "webp_source": {},
    "no_polling": {},
}
NAMES = tuple(DEFAULT_PARAMS)
# How a task ends: a task takes at most one, so two armed outcomes go to successive tasks.
TASK_OUTCOMES = ("moderation", "unsafe_output", "task_failed", "cancelled", "stalled")
# Refusals of `POST /backend/video_gen`: likewise, at most one per request.
SUBMIT_REFUSALS = ("heavy_load", "rate_limit", "too_many_concurrent", "unable_to_create")

# Page variants: key -> accepted values, the first being the default page.
PAGE_VARIANTS: dict[str, tuple[Any, ...]] = {
    "composer": ("textarea", "contenteditable"),
    "button": ("create", "generate", "icon", "none"),
    "popup": (False, True, "app", "announcement"),
    "settings": (True, False),
}


def _check_value(name: str, key: str, value: Any, default: Any) -> None:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: {key} must be true or false")
    # bool is an int in Python, but `resets_in=True` is surely a mistake.
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name}: {key} must be a number >= 0")


class Scenarios(Switches):
    """Armed scenarios; every method is safe to call from the server's threads."""

    def __init__(self) -> None:
        super().__init__(DEFAULT_PARAMS, _check_value, kind="scenario", null="null")

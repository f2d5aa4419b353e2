"""Failure modes and page variants of the real site, switched on by tests and demos.

A scenario is armed for the next N occurrences (or until cleared) and consumed as it fires.
What one occurrence is depends on the scenario:

    per conversation POST (a send)
        limit(words, plan)  the answer is the plan-limit text only, no image
        refusal             "I can't assist with that request.", title "Request Denied"
        http_429            the POST answers 429
    per image request (a send that asks for an image)
        text_only           a description in words, no tool message
        gen_failed          the tool message ends "finished_with_error", no image
        withdrawn(after)    the image is finished, then redacted `after` seconds later
        busy                the "Lots of people ..." text, and the image takes 3x the delay
        slow_image(seconds) the final image comes that long after the preview
    per request it applies to
        cloudflare          pages, /api/auth/session and /backend-api/*: 403 challenge page
        logged_out          /api/auth/session answers {}, /backend-api/* answer 401
        token_expired       /backend-api/* answer 401 token_expired
        suspended           /backend-api/* answer 403 account_deactivated

Of the send-level answers (limit, refusal, text_only) and of the image outcomes (gen_failed,
withdrawn), only the one armed first fires; the others wait for the next sends.
"""

from __future__ import annotations

from typing import Any

from standin_kit import Switches

# Each scenario's parameters with their defaults; the default's type is the accepted type.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "limit": {"words": "in 10 hours and 25 minutes", "plan": "Plus"},
    "refusal": {},
    "text_only": {},
    "gen_failed": {},
    "withdrawn": {"after": 0.5},
    "busy": {},
    "cloudflare": {},
    "logged_out": {},
    "token_expired": {},
    "http_429": {},
    "suspended": {},
    "slow_image": {"seconds": 5.0},
}
NAMES = tuple(DEFAULT_PARAMS)
SEND_ANSWERS = ("limit", "refusal")  # any send
IMAGE_ANSWERS = ("text_only",)  # a send asking for an image
IMAGE_OUTCOMES = ("gen_failed", "withdrawn")

# Page variants: key -> accepted values, the first being the default page.
PAGE_VARIANTS: dict[str, tuple[Any, ...]] = {
    "composer": ("prosemirror", "textarea", "renamed"),
    "send": ("2025", "2026"),
    "plus_menu": (True, False),
}


def _check_value(name: str, key: str, value: Any, default: Any) -> None:
    if isinstance(default, str):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}: {key} must be a non-empty string")
    # bool is an int in Python, but `after=True` is surely a mistake.
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name}: {key} must be a number >= 0")


class Scenarios(Switches):
    """Armed scenarios; every method is safe to call from the server's threads."""

    def __init__(self) -> None:
        super().__init__(DEFAULT_PARAMS, _check_value, kind="scenario", null="null")

"""What an exchange with ChatGPT came to, and the error each failure is (pure code).

Failures arrive mostly as assistant text, not as HTTP errors, so they are recognised by the
site's words (kept as the error's detail)::

    the plan's limit        RateLimited, resuming at the reset its words (or its
                            limits_progress hint) state; an hour if neither does
    a refusal               ContentRejected (the prompt's fault)
    text and no image       asked once more, more firmly; then NoImageGiven (the prompt's)
    a preview said finished Pending: only a file of FULL_SIZE_SIDE px is the image
    "Image generation failed", finished_with_error   GenerationFailed (try again)
    an image withdrawn      ImageWithdrawn (the prompt's fault; nothing kept)
    HTTP 401 / 403 / 429    SessionExpired (a refused token too) / AccessDenied or
                            Cloudflare / RateLimited (its stated reset, else an hour)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sora_driver.chatgpt.conversation import Exchange, ImagePart, timestamp
from sora_driver.classify import MIN_RESET_SECONDS, api_error, error_fields
from sora_driver.errors import CloudflareChallenge, PhoneVerificationRequired, SessionExpired
from sora_watcher.errors import (
    AccessDenied,
    ContentRejected,
    GenerationError,
    RateLimited,
    TransientError,
)

# The plan's limit in its own words; not any "limit" ("I hit the speed limit" is a prompt).
LIMIT = re.compile(
    r"\bplan limit\b|\blimit for image generation|\bcreate more images when\b", re.IGNORECASE
)
RESET_IN = re.compile(r"\bresets?\s+in\s+(?P<delay>[^.]+)", re.IGNORECASE)
RESET_AT = re.compile(
    r"\bresets?\s+(?P<tomorrow>tomorrow\s+)?at\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})"
    r"\s*(?P<half>[ap]\.?\s?m\b\.?)?",
    re.IGNORECASE,
)
DURATION = re.compile(r"(?P<n>\d+)\s*(?P<unit>day|hour|hr|minute|min|second|sec)s?\b", re.I)
UNIT_SECONDS = {"day": 86400, "hour": 3600, "hr": 3600, "minute": 60, "min": 60}
# "I can't generate images directly, but here's a description" is an answer in text (asked
# again firmly), not a refusal: only a refusal of *this* request counts.
REFUSALS = re.compile(
    r"can['’]t (?:assist|help) with|cannot (?:assist|help) with|unable to (?:assist|help)"
    r"|violate our content polic|against our content polic"
    r"|can['’]t (?:create|generate|make) (?:that|this)\b",
    re.IGNORECASE,
)
REFUSED_TITLES = ("Request Denied",)
WITHDRAWN = re.compile(r"\b(?:removed|withdrawn)\b.*\bpolic", re.IGNORECASE)
GENERATION_FAILED = re.compile(r"image generation failed", re.IGNORECASE)
BUSY = re.compile(r"lots of people are creating images|we'll notify you", re.IGNORECASE)
IMAGE_MARKERS = ("image_gen_async", "image_gen_task_id")
LIMIT_FEATURE = "image_gen"  # limits_progress's feature_name for images
# A limit whose end we cannot read: users report caps over rolling hours (3 h on Plus, a day
# on Free), and every attempt made while limited counts against the account; a minute would
# only hammer the site. An hour, then the page is asked again.
UNKNOWN_RESET_SECONDS = 3600.0
FULL_SIZE_SIDE = 1024  # the site makes 1024x1024, 1024x1536, 1536x1024; previews are smaller
SUSPENDED_CODES = {"account_deactivated", "account_suspended", "account_banned"}


class GenerationFailed(TransientError):
    """ "Image generation failed": the site's hiccup; asked again later."""


class ImageWithdrawn(ContentRejected):
    """The image came, then the site withdrew it (its policy): nothing is kept."""


class NoImageGiven(ContentRejected):
    """The answer was text, even when asked again more firmly."""


# -- what an exchange came to ---------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """Nothing to say yet: the image is being made, or the answer is being written."""

    why: str = ""


@dataclass(frozen=True)
class Images:
    parts: tuple[ImagePart, ...]


@dataclass(frozen=True)
class Limited:
    words: str
    reset_at: float  # Unix seconds: as stated, else UNKNOWN_RESET_SECONDS after it was said


@dataclass(frozen=True)
class Refused:
    words: str


@dataclass(frozen=True)
class TextOnly:
    words: str
    asked_firmly: bool  # the text came after our firmer request already


@dataclass(frozen=True)
class Failed:
    words: str


@dataclass(frozen=True)
class Withdrawn:
    words: str


Outcome = Pending | Images | Limited | Refused | TextOnly | Failed | Withdrawn


def outcome(exchange: Exchange, firmly: str, now: datetime | None = None) -> Outcome:
    """What the last exchange came to. ``firmly``: how our firmer requests begin."""
    tools = exchange.tool_messages
    text = exchange.assistant_text
    if any(m.redacted for m in tools) or WITHDRAWN.search(text):
        return Withdrawn(text or "the image was withdrawn (is_redacted)")
    finished = [m for m in tools if m.status == "finished_successfully" and m.images]
    if finished:
        parts = tuple(part for m in finished for part in m.images)
        small = [p for p in parts if p.long_side is not None and p.long_side < FULL_SIZE_SIDE]
        if small:  # a preview said finished: the full-size file is not there yet
            return Pending(f"only a preview so far ({small[0].width}x{small[0].height})")
        return Images(parts)
    if any(m.status == "finished_with_error" for m in tools) or GENERATION_FAILED.search(text):
        return Failed(text or "the image generation ended with an error")
    if tools:
        return Pending("the image is being made")
    said = _said_at(exchange, now)
    hinted = _limit_hint(exchange, said)
    if LIMIT.search(text) or hinted is not None:
        reset_at = reset_time(text, said) or hinted or said.timestamp() + UNKNOWN_RESET_SECONDS
        return Limited(text or "the image_gen limit is reached (limits_progress)", reset_at)
    if REFUSALS.search(text) or exchange.title in REFUSED_TITLES:
        return Refused(text or f"conversation titled {exchange.title!r}")
    if BUSY.search(text) or _image_announced(exchange):
        return Pending("the site said the image is coming")
    answers = [m for m in exchange.answers if m.role == "assistant"]
    if answers and all(m.status == "finished_successfully" for m in answers) and text:
        return TextOnly(text, exchange.asked_text.startswith(firmly))
    return Pending("the answer is being written")


def _image_announced(exchange: Exchange) -> bool:
    """The answer carries the markers of an asynchronous image (the tool message follows)."""
    return any(
        key in m.metadata or m.metadata.get("async_task_type") == "image_gen"
        for m in exchange.answers
        for key in IMAGE_MARKERS
    )


def _limit_hint(exchange: Exchange, said: datetime) -> float | None:
    """When the image limit resets, if an answer's ``limits_progress`` says none is left:
    ``[{"feature_name": "image_gen", "remaining": 0, "resets_after": <ISO time>}]``."""
    for message in exchange.answers:
        progress = message.metadata.get("limits_progress")
        for entry in progress if isinstance(progress, list) else []:
            if not isinstance(entry, dict) or entry.get("feature_name") != LIMIT_FEATURE:
                continue
            remaining = entry.get("remaining")
            if not isinstance(remaining, (int, float)) or remaining > 0:
                continue
            return _resets_after(entry.get("resets_after"), said)
    return None


def _resets_after(value: Any, said: datetime) -> float:
    """``resets_after`` as Unix seconds: an ISO time, a Unix time, or seconds from ``said``."""
    at = timestamp(value)
    if at is None:
        return said.timestamp() + UNKNOWN_RESET_SECONDS
    if isinstance(value, (int, float)) and at < 10**9:  # a delay, not a date
        return said.timestamp() + at
    return at


def _said_at(exchange: Exchange, now: datetime | None) -> datetime:
    """When the limit was stated (its message's time), in local time."""
    created = next((m.created for m in reversed(exchange.answers) if m.created), None)
    if created is not None:
        return datetime.fromtimestamp(created).astimezone()
    return now or datetime.now().astimezone()


def reset_time(words: str, said_at: datetime) -> float | None:
    """The reset time a limit message states, as Unix seconds: "resets in 10 hours and 25
    minutes", "in 3 seconds", "tomorrow at 14:33", "at 2:33 PM" (the user's local time)."""
    if match := RESET_IN.search(words):
        seconds = sum(
            int(m["n"]) * UNIT_SECONDS.get(m["unit"].lower(), 1)
            for m in DURATION.finditer(match["delay"])
        )
        return (said_at + timedelta(seconds=seconds)).timestamp() if seconds else None
    if match := RESET_AT.search(words):
        hour, minute = int(match["hour"]), int(match["minute"])
        half = (match["half"] or "").lower()
        if half.startswith("p") and hour < 12:
            hour += 12
        elif half.startswith("a") and hour == 12:
            hour = 0
        if hour > 23 or minute > 59:
            return None
        at = said_at.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if match["tomorrow"] or at <= said_at:
            at += timedelta(days=1)
        return at.timestamp()
    return None


# -- errors -----------------------------------------------------------------------------------


RESET_SLACK_SECONDS = 1.0  # the site's clock and ours may differ a little


def limit_error(limited: Limited, now: float) -> RateLimited:
    """The pause for a plan's limit: until the reset it states (or an hour if none)."""
    wait = max(limited.reset_at - now, 0.0) + RESET_SLACK_SECONDS
    return RateLimited(limited.words, resume_after=max(wait, MIN_RESET_SECONDS))


def outcome_error(found: Outcome, conversation_id: str) -> GenerationError | None:
    """The error an exchange ended with (None: images, or nothing to say yet)."""
    where = f"conversation {conversation_id}"
    if isinstance(found, Refused):
        return ContentRejected(f"{where}: the site says: {found.words}")
    if isinstance(found, TextOnly):
        return NoImageGiven(f"{where}: no image, even when asked again; the site says: "
                            f"{found.words[:300]}")  # fmt: skip
    if isinstance(found, Failed):
        return GenerationFailed(f"{where}: {found.words}")
    if isinstance(found, Withdrawn):
        return ImageWithdrawn(f"{where}: {found.words}")
    return None


def http_error(status: int, text: str, where: str) -> GenerationError:
    """The error for a non-2xx answer of a ``/backend-api`` call: the shared reading
    (``api_error``, a limit of unknown end waited on as one of the plan's), with ChatGPT's
    own meaning of a 403: not Cloudflare, not a refused token, the account may not."""
    error = api_error(status, text, where, unknown_reset=UNKNOWN_RESET_SECONDS)
    code = str(error_fields(text).get("code") or "")
    if code in SUSPENDED_CODES:
        return AccessDenied(error.detail)
    if isinstance(error, (CloudflareChallenge, PhoneVerificationRequired, SessionExpired)):
        return error
    if status == 403:
        return AccessDenied(error.detail)
    return error

"""Finding page elements from a selector profile tolerant to DOM changes.

A profile is a JSON file that lists, for each element a backend needs, several candidates
tried in order: role, placeholder, label and text first, CSS last (see a backend's own
profile, such as ``sora_driver/selectors.json``). A user's profile replaces elements of the
backend's default one. Shared by every web backend: it knows no site.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from loguru import logger
from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from sora_driver.errors import ElementNotFound
from sora_watcher.options import ConfigError

Candidate = dict[str, str]


KINDS = ("role", "placeholder", "label", "text", "css")  # what a candidate may look for


def load_profile(default: Path, override: Path | None = None) -> dict[str, list[Candidate]]:
    """The default profile, with the elements of a user's profile (``SORA_SELECTORS``) on top.
    Keys starting with ``_`` are comments. A user's profile that cannot be used is a
    configuration error, said at start-up rather than at the first prompt."""
    profile: dict[str, Any] = json.loads(default.read_text(encoding="utf-8"))
    if override is not None:
        try:
            profile.update(_elements(json.loads(override.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"SORA_SELECTORS={override}: {exc}") from None
    return {key: value for key, value in profile.items() if not key.startswith("_")}


def _elements(profile: Any) -> dict[str, Any]:
    """A user's profile, checked: each element a list of candidates, each looking for one of
    ``KINDS`` (ValueError naming the first that does not)."""
    if not isinstance(profile, dict):
        raise ValueError("expected a JSON object of elements")
    for element, candidates in profile.items():
        if element.startswith("_"):
            continue
        if not isinstance(candidates, list) or not all(
            isinstance(c, dict) and any(kind in c for kind in KINDS) for c in candidates
        ):
            raise ValueError(
                f"{element}: expected a list of candidates, each with one of {', '.join(KINDS)}"
            )
    return profile


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


def to_locator(page: Page, candidate: Candidate) -> Locator:
    if "role" in candidate:
        name = candidate.get("name")
        if name is None:
            return page.get_by_role(candidate["role"])  # type: ignore[arg-type]
        return page.get_by_role(candidate["role"], name=_pattern(name))  # type: ignore[arg-type]
    if "placeholder" in candidate:
        return page.get_by_placeholder(_pattern(candidate["placeholder"]))
    if "label" in candidate:
        return page.get_by_label(_pattern(candidate["label"]))
    if "text" in candidate:
        return page.get_by_text(_pattern(candidate["text"]))
    return page.locator(candidate["css"])


def with_value(candidates: list[Candidate], value: str) -> list[Candidate]:
    """Candidates whose patterns hold ``{value}``, filled in (escaped, it is a regex)."""
    escaped = re.escape(value)
    return [{key: text.replace("{value}", escaped) for key, text in c.items()} for c in candidates]


def describe(candidates: list[Candidate]) -> str:
    return "; ".join(", ".join(f"{k}={v!r}" for k, v in c.items()) for c in candidates)


def _visible(page: Page, candidates: list[Candidate]) -> list[Locator]:
    return [to_locator(page, c).filter(visible=True) for c in candidates]


def _anyone(locators: list[Locator]) -> Locator:
    anyone = locators[0]
    for other in locators[1:]:
        anyone = anyone.or_(other)
    return anyone


def _first_in_profile_order(visible: list[Locator]) -> Locator | None:
    """The first visible match of the first candidate that has one."""
    return next((locator.first for locator in visible if locator.count()), None)


def find(page: Page, element: str, candidates: list[Candidate], timeout_ms: float) -> Locator:
    """The first visible match of the first candidate that has one.

    Waits (on the page's own events, through Playwright) until any candidate is visible,
    then prefers candidates in profile order, because a late, generic CSS candidate may
    match something else too. What it returns stays "the first visible match of that
    candidate" each time it is used, however the page re-renders it.
    """
    visible = _visible(page, candidates)
    anyone = _anyone(visible)
    try:
        anyone.first.wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        raise ElementNotFound(
            f"{element}: no visible match on {page.url} after {timeout_ms / 1000:.0f}s; "
            f"tried {describe(candidates)}"
        ) from None
    return _first_in_profile_order(visible) or anyone.first


def visible_now(page: Page, candidates: list[Candidate]) -> Locator | None:
    """A visible match right now, without waiting (for optional things such as pop-ups)."""
    if not candidates:
        return None
    visible = _visible(page, candidates)
    if not _anyone(visible).count():  # one round trip in the usual case: nothing there
        return None
    return _first_in_profile_order(visible)


class Profile:
    """A loaded profile, used by element name."""

    def __init__(self, default: Path, override: Path | None = None) -> None:
        self.candidates = load_profile(default, override)

    def find(
        self, page: Page, element: str, timeout_ms: float, value: str | None = None
    ) -> Locator:
        """``element``'s first visible match (see ``find``); ``value`` fills in ``{value}``."""
        candidates = self.candidates[element]
        if value is None:
            return find(page, element, candidates, timeout_ms)
        return find(page, f"{element} {value}", with_value(candidates, value), timeout_ms)

    def visible_now(self, page: Page, element: str) -> Locator | None:
        """A visible match right now, or None (an element the profile lacks is never there)."""
        return visible_now(page, self.candidates.get(element, []))

    def dismiss_popups(self, page: Page, click_timeout_ms: float, most: int = 3) -> None:
        """Close what covers the page (``popup_close``), ``most`` at the most: a pop-up that
        comes back each time must not hold the step forever."""
        for _ in range(most):
            close = self.visible_now(page, "popup_close")
            if close is None:
                return
            logger.info("dismissing a pop-up over the composer")
            close.click(timeout=click_timeout_ms)

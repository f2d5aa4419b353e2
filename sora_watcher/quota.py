"""``SORA_DAILY_LIMIT``: at most so many images per local day, whatever the backend.

Today's count is read once from ``images/`` (the names start with the local date) and kept
up to date as images arrive, so that a restart does not reset it. (Images left staged by a
run that stopped are published by the next one without being counted again: a few at most.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from sora_watcher.errors import DailyLimitReached, PermanentError, Resume


class OverDailyLimit(PermanentError):
    """One entry asks for more images than a whole day allows: it could never be made."""

    def __init__(self, variants: int, limit: int) -> None:
        super().__init__(f"variants {variants} is over SORA_DAILY_LIMIT={limit}")


def todays_images(images: Path, now: datetime | None = None) -> Iterator[Path]:
    day = (now or datetime.now()).strftime("%Y%m%d_")
    if images.is_dir():
        yield from (p for p in images.rglob(day + "*.png") if p.is_file())


def tokens(images: Iterable[Path]) -> int:
    """Tokens billed for ``images``, from their sidecars (an API backend's usage). One call's
    usage is in the sidecar of each of its images: it is counted at the first."""
    total = 0
    for image in images:
        try:
            sidecar = json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))
            if sidecar.get("variant", 0) == 0:
                total += int(sidecar["usage"]["total_tokens"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # no usage (another backend), or a sidecar being written
    return total


def seconds_to_midnight(now: datetime) -> float:
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


class DailyCount:
    def __init__(self, images: Path, limit: int) -> None:
        self.limit = limit
        self.day = datetime.now().date()
        self.count = sum(1 for _ in todays_images(images)) if limit else 0

    def add(self, images: int) -> None:
        self._roll()
        self.count += images

    def reached(self, coming: int) -> DailyLimitReached | None:
        """The pause to make if ``coming`` more images would pass today's limit."""
        self._roll()
        if not self.limit or self.count + coming <= self.limit:
            return None
        now = datetime.now()
        return DailyLimitReached(
            f"{self.count} image(s) made today, {coming} more would pass SORA_DAILY_LIMIT="
            f"{self.limit}",
            Resume(after=seconds_to_midnight(now) + 1, hint="the queue resumes at midnight"),
        )

    def _roll(self) -> None:
        today = datetime.now().date()
        if today != self.day:
            self.day, self.count = today, 0

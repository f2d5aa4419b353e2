"""Task store and the task state machine.

A task's status is a pure function of the time elapsed since it was created, so there is no
worker thread to start, stop or race with: every read computes the current state.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from standin_kit.sessions import iso

from . import images

# Share of the generation time a task spends queued before it starts running.
QUEUED_SHARE = 0.15
# The real site was seen reporting succeeded tasks with progress_pct well below 1; keep that
# quirk so clients learn to rely on `status`.
SUCCEEDED_PROGRESS = 0.9
# A prompt containing this marker ends as a content-policy failure (tests of failure paths).
UNSAFE_MARKER = "[standin:unsafe]"
CONTENT_POLICY = "This content may violate our content policies."
# How a task armed with a scenario ends (see scenarios.TASK_OUTCOMES).
FINAL_STATUS = {
    "moderation": "failed",
    "unsafe_output": "succeeded",
    "task_failed": "failed",
    "cancelled": "cancelled",
}

_ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, as in ULIDs


def new_id(prefix: str) -> str:
    """An id like the real ones: prefix + "01" + 26 ULID-like characters."""
    return f"{prefix}_01" + "".join(secrets.choice(_ULID_ALPHABET) for _ in range(26)).lower()


@dataclass(frozen=True)
class Task:
    id: str
    user: str
    prompt: str
    n_variants: int
    width: int
    height: int
    type: str
    created: float
    delay: float  # captured at creation: changing the server delay never alters a running task
    # Bound at creation from the armed scenarios, like `delay`.
    outcome: str | None = None  # one of scenarios.TASK_OUTCOMES, None for a normal task
    stall_at: float = 0.42  # progress where a "stalled" task stops moving
    src_ext: str = "png"  # "webp" for the webp_source scenario

    @property
    def output_size(self) -> tuple[int, int]:
        return images.output_size(self.width, self.height)

    @property
    def asset_stamp(self) -> str:
        """The timestamp part of asset file names."""
        return str(int(self.created))

    def is_unsafe(self) -> bool:
        return UNSAFE_MARKER in self.prompt

    def status(self, now: float) -> str:
        elapsed = now - self.created
        if elapsed >= self.delay and self.outcome != "stalled":
            if self.outcome is not None:
                return FINAL_STATUS[self.outcome]
            return "failed" if self.is_unsafe() else "succeeded"
        return "queued" if elapsed < QUEUED_SHARE * self.delay else "running"

    def has_images(self, now: float) -> bool:
        return self.status(now) == "succeeded" and self.outcome != "unsafe_output"

    def progress(self, now: float) -> float:
        status = self.status(now)
        if status == "queued":
            return 0.0
        if status == "running":
            queued_time = QUEUED_SHARE * self.delay
            running_time = self.delay - queued_time
            fraction = (now - self.created - queued_time) / running_time if running_time else 1.0
            if self.outcome == "stalled":
                fraction = min(fraction, self.stall_at)
            return round(min(max(fraction, 0.0), 0.999), 3)
        return SUCCEEDED_PROGRESS


# Turns an unquoted asset path ("assets/task_x/1700000000_src_0.png") into a signed URL.
AssetUrl = Callable[[str], str]


def asset_paths(task: Task, index: int) -> dict[str, str]:
    base = f"assets/{task.id}/{task.asset_stamp}"
    return {
        "src": f"{base}_src_{index}.{task.src_ext}",
        "webp": f"{base}_img_{index}.webp",
        "thumb": f"{base}_img_{index}_thumb.webp",
    }


def _verdict(task: Task, status: str) -> dict[str, Any]:
    """The moderation fields of a task's JSON."""
    if task.outcome == "moderation" and status == "failed":
        # The prompt itself was refused: nothing was generated, so nothing is "unsafe".
        moderation = {"type": "terminal", "code": "sexual", "is_output_rejection": False}
        return {
            "num_unsafe_generations": 0,
            "moderation_result": moderation,
            "failure_reason": CONTENT_POLICY,
        }
    if task.outcome == "unsafe_output" and status == "succeeded":
        # Generated, then every image was withheld: "succeeded" with no generations.
        moderation = {"type": "terminal", "code": "content_policy", "is_output_rejection": True}
        return {
            "num_unsafe_generations": task.n_variants,
            "moderation_result": moderation,
            "failure_reason": None,
        }
    if task.outcome == "task_failed" and status == "failed":
        moderation = {"type": "passed", "code": None, "is_output_rejection": False}
        return {
            "num_unsafe_generations": 0,
            "moderation_result": moderation,
            "failure_reason": "Internal error while generating.",
        }
    failed = status == "failed"  # only the unsafe marker is left to fail a task
    return {
        "num_unsafe_generations": task.n_variants if failed else 0,
        "moderation_result": {
            "type": "terminal" if failed else "passed",
            "code": "content_policy" if failed else None,
            "is_output_rejection": failed,
        },
        "failure_reason": CONTENT_POLICY if failed else None,
    }


def task_json(task: Task, now: float, asset_url: AssetUrl) -> dict[str, Any]:
    status = task.status(now)
    queued = status == "queued"
    generations: list[dict[str, Any]] = []
    if task.has_images(now):
        width, height = task.output_size
        for index in range(task.n_variants):
            paths = asset_paths(task, index)
            generations.append(
                {
                    # Derived from the task id so repeated reads give the same generation ids.
                    "id": f"gen_{task.id.removeprefix('task_')}{index}",
                    "task_id": task.id,
                    "created_at": iso(task.created + task.delay),
                    "width": width,
                    "height": height,
                    "url": asset_url(paths["src"]),
                    "encodings": {
                        "source": {"path": asset_url(paths["webp"])},
                        "thumbnail": {"path": asset_url(paths["thumb"])},
                    },
                    "prompt": task.prompt,
                }
            )
    return {
        "id": task.id,
        "status": status,
        "prompt": task.prompt,
        "created_at": iso(task.created),
        "progress_pct": task.progress(now),
        "progress_pos_in_queue": 1 if queued else None,
        "estimated_queue_wait_time": (
            round(QUEUED_SHARE * task.delay - (now - task.created), 1) if queued else None
        ),
        "queue_status_message": "Your generation is in the queue" if queued else None,
        "generations": generations,
        **_verdict(task, status),
        "needs_user_review": False,
        "n_variants": task.n_variants,
        "width": task.width,
        "height": task.height,
        "type": task.type,
    }


class TaskStore:
    """All tasks, per user, oldest first; safe to use from the server's many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_user: dict[str, list[Task]] = {}
        self._by_id: dict[str, Task] = {}

    def create(
        self,
        user: str,
        prompt: str,
        n_variants: int,
        width: int,
        height: int,
        type_: str,
        delay: float,
        now: float,
        outcome: str | None = None,
        stall_at: float = 0.42,
        src_ext: str = "png",
    ) -> Task:
        task = Task(
            new_id("task"),
            user,
            prompt,
            n_variants,
            width,
            height,
            type_,
            now,
            delay,
            outcome,
            stall_at,
            src_ext,
        )
        with self._lock:
            self._by_user.setdefault(user, []).append(task)
            self._by_id[task.id] = task
        return task

    def find(self, task_id: str) -> Task | None:
        with self._lock:
            return self._by_id.get(task_id)

    def get(self, user: str, task_id: str) -> Task | None:
        task = self.find(task_id)
        return task if task is not None and task.user == user else None

    def active_count(self, user: str, now: float) -> int:
        with self._lock:
            tasks = list(self._by_user.get(user, []))
        return sum(1 for task in tasks if task.status(now) in ("queued", "running"))

    def page(self, user: str, limit: int, before: str | None) -> tuple[list[Task], bool]:
        """Newest first; `before` starts just after (older than) that task.

        Raises KeyError when `before` is not one of the user's tasks.
        """
        with self._lock:
            newest_first = list(reversed(self._by_user.get(user, [])))
        start = 0
        if before is not None:
            ids = [task.id for task in newest_first]
            if before not in ids:
                raise KeyError(before)
            start = ids.index(before) + 1
        chosen = newest_first[start : start + limit]
        return chosen, start + limit < len(newest_first)

"""The generations in flight of a backend whose generation is one blocking call (the Images
API, a model on this machine), by task id.

``submit`` adds the call here (``add``) and starts it on a thread of the backend's; that
thread ends it (``end``) with its images or its error, whatever happens, so that no call is
waited for for ever. ``finished`` and ``collect`` wait for the end. Nothing here outlives the
process: such a backend says ``follows_tasks=False``, and a restart sends the prompt again.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from sora_watcher.backends.base import Generation
from sora_watcher.errors import GenerationError, Interrupted, Unreachable

SLICE_SECONDS = 0.5  # longest time between two looks at the stop flag
C = TypeVar("C")  # what the backend keeps of a call (its parameters)


@dataclass
class _Running(Generic[C]):
    call: C
    over: bool = False
    interrupted: bool = False  # by a stop: the daemon is ending, nothing failed
    generation: Generation | None = None
    error: GenerationError | None = None


class Calls(Generic[C]):
    """Safe to use from any thread."""

    def __init__(self, prefix: str, stop: threading.Event) -> None:
        self.prefix = prefix  # of the task ids: "call_000001"
        self.stop = stop
        self._running: dict[str, _Running[C]] = {}
        self._changed = threading.Condition()
        self._counter = itertools.count(1)

    def add(self, call: C) -> str:
        task_id = f"{self.prefix}_{next(self._counter):06d}"
        with self._changed:
            self._running[task_id] = _Running(call)
        return task_id

    def end(
        self,
        task_id: str,
        generation: Generation | None,
        error: GenerationError | None,
        interrupted: bool = False,
    ) -> None:
        """What came of the call; neither images nor an error (a BaseException on its way
        out of the thread) still ends it, as a call that gave nothing."""
        if generation is None and error is None:
            error = Unreachable(f"{task_id}: the call ended without images")
        with self._changed:
            running = self._running.get(task_id)
            if running is not None:
                running.over, running.interrupted = True, interrupted
                running.generation, running.error = generation, error
            self._changed.notify_all()

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        with self._changed:
            self._changed.wait_for(lambda: any(map(self._over, task_ids)), timeout=wait)
            return [task_id for task_id in task_ids if self._over(task_id)]

    def collect(self, task_id: str) -> Generation:
        """The call's images once it has ended; its error raised; ``Interrupted`` on a stop."""
        with self._changed:
            while not self._over(task_id):
                if self.stop.is_set():
                    raise Interrupted()
                self._changed.wait(SLICE_SECONDS)
            running = self._running.pop(task_id, None)
        if running is None:
            raise Unreachable(f"{task_id}: no such call in this run")
        if running.interrupted:
            raise Interrupted()
        if running.error is not None:
            raise running.error
        assert running.generation is not None
        return running.generation

    def call(self, task_id: str) -> C | None:
        with self._changed:
            running = self._running.get(task_id)
            return None if running is None else running.call

    def _over(self, task_id: str) -> bool:  # with self._changed held
        running = self._running.get(task_id)
        return running is None or running.over

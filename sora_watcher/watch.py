"""Noticing new inputs: a watchdog observer whose handler only puts paths on a queue.

watchdog runs handlers on its one emitter thread under a lock, so anything slow here would
delay every later event. We react to close-after-write (the writer is done) and to files moved
in (the atomic way to publish a file), never to "created", which fires while a writer may still
be writing.
"""

from __future__ import annotations

import queue
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from sora_watcher.folders import is_ignored


class InboxHandler(FileSystemEventHandler):
    def __init__(self, inbox: Path, paths: queue.Queue[Path]) -> None:
        self.inbox = inbox
        self.paths = paths

    def _offer(self, raw: str | bytes) -> None:
        path = Path(raw if isinstance(raw, str) else raw.decode("utf-8", "surrogateescape"))
        if path.parent == self.inbox and not is_ignored(path.name):
            self.paths.put(path)

    def on_closed(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileClosedEvent):
            self._offer(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileMovedEvent):
            self._offer(event.dest_path)


def start_observer(inbox: Path, paths: queue.Queue[Path]) -> BaseObserver:
    observer = Observer()
    observer.schedule(InboxHandler(inbox, paths), str(inbox), recursive=False)
    observer.daemon = True  # never keep the process alive on its own
    observer.start()
    return observer

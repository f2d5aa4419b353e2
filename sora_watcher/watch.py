"""Noticing new inputs, and never the same one twice in the queue.

Three sources feed one queue:
- a watchdog observer. Its handlers run on its one emitter thread under a lock, so they only
  note paths. On Linux we react to close-after-write (the writer is done) and to files moved
  in (the atomic way to publish a file), never to "created", which fires mid-write. A file
  moved in from outside the inbox is an unpaired IN_MOVED_TO, which watchdog reports as a move
  from "" only with ``generate_full_events`` (otherwise as "created").
- with ``SORA_POLLING`` (network shares, where inotify sees nothing), a polling observer; it
  has no close event, so its paths wait for a quiet period in which size and mtime stay put.
- a periodic rescan of the inbox, for what the kernel's event queue dropped (inotify overflow)
  or what arrived while the observer was down; it also restarts an observer that died.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from pathlib import Path

from loguru import logger
from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver
from watchdog.utils import UnsupportedLibcError

from sora_watcher.folders import is_ignored

# Our claim renames inputs out of the inbox: an IN_MOVED_FROM with no IN_MOVED_TO here. watchdog
# holds such an event (and every event behind it) 0.5 s, hoping to pair it, which made each
# input that arrived right after a claim wait half a second. A rename inside the inbox still
# pairs: the kernel hands both halves over in the same read. A pair split across reads after
# this delay shows up as a move from "" (see below), complete all the same.
MOVE_PAIRING_SECONDS = 0.02
with contextlib.suppress(ImportError):  # watchdog >= 6; older ones keep their 0.5 s
    from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper

    InotifyMoveEventGrouper.delay = MOVE_PAIRING_SECONDS

INOTIFY = sys.platform.startswith("linux")  # elsewhere moves in wait for the quiet period
TICK_SECONDS = 0.2  # how often quiet candidates are looked at
POLL_SECONDS = 1.0  # the polling observer's interval
PROBE_PREFIX = ".sora-watcher-probe-"  # a hidden name: never taken for an input
PROBE = f"{PROBE_PREFIX}{os.getpid()}"
PROBE_WAIT_SECONDS = 10.0


def _inotify_observer() -> BaseObserver:
    """inotify with full events; watchdog's own fallback where the C library lacks inotify."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except UnsupportedLibcError:
        return Observer()
    return InotifyObserver(generate_full_events=True)


def remove_stale_probes(inbox: Path) -> None:
    """Probe files of workers that died between writing and removing theirs (kill -9)."""
    for probe in inbox.glob(PROBE_PREFIX + "*"):
        pid = probe.name.removeprefix(PROBE_PREFIX)
        if pid.isdigit() and not _alive(int(pid)):
            probe.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _path(raw: str | bytes) -> Path:
    return Path(os.fsdecode(raw))


class Intake:
    """The inbox's paths, ready to claim, each queued at most once at a time."""

    def __init__(
        self, inbox: Path, settle_seconds: float, rescan_seconds: float, polling: bool
    ) -> None:
        self.inbox = inbox
        self.settle_seconds = settle_seconds
        self.rescan_seconds = rescan_seconds
        self.polling = polling
        self._ready: queue.Queue[Path] = queue.Queue()
        self._queued: set[Path] = set()
        self._quiet: dict[Path, tuple[int, int, float]] = {}  # size, mtime, unchanged since
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None

    # -- feeding --------------------------------------------------------------------------

    def offer(self, path: Path) -> None:
        """A path known to be complete (closed after writing, moved in, or resumed)."""
        with self._lock:
            self._quiet.pop(path, None)
            if path in self._queued:
                return
            self._queued.add(path)
        self._ready.put(path)

    def consider(self, path: Path) -> None:
        """A path that may still be written to: queued once it has been quiet long enough."""
        if is_ignored(path.name) or path.parent != self.inbox:
            return
        with self._lock:
            if path in self._queued or path in self._quiet:
                return
            self._quiet[path] = (-1, -1, time.monotonic())
        self._settle(path)

    def scan(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(os.scandir(self.inbox), key=lambda e: e.name):
                self.consider(Path(entry.path))

    def _settle(self, path: Path) -> None:
        try:
            stat = os.lstat(path)
        except FileNotFoundError:
            with self._lock:
                self._quiet.pop(path, None)
            return
        now = time.monotonic()
        with self._lock:
            size, mtime, since = self._quiet.get(path, (-1, -1, now))
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime):
                # Changed, or first look. Locally, mtime tells how long it has been quiet
                # already; a network share's clock may be off, so there it counts from now.
                age = 0.0 if self.polling else max(0.0, time.time() - stat.st_mtime)
                since = now - age
                self._quiet[path] = (stat.st_size, stat.st_mtime_ns, since)
            ready = now - since >= self.settle_seconds
        if ready:
            self.offer(path)

    # -- taking -----------------------------------------------------------------------------

    def get(self, timeout: float) -> Path | None:
        try:
            path = self._ready.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self._queued.discard(path)
        return path

    def idle(self) -> bool:
        """Nothing queued and nothing waiting to be quiet."""
        with self._lock:
            return not self._queued and not self._quiet

    # -- running ----------------------------------------------------------------------------

    def start(self, watch: bool) -> None:
        """With ``watch``, watch the inbox until ``stop``; then scan what is already there."""
        remove_stale_probes(self.inbox)
        if watch:
            self._observer = self._start_observer()
        self.scan()
        self._thread = threading.Thread(
            target=self._loop, args=(watch,), name="intake", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _start_observer(self) -> BaseObserver:
        """Start an observer and return once it sees events.

        watchdog sets its inotify watch up on its own thread after ``start()``; a file
        dropped in between would only be found by the next rescan. So we drop a probe file
        and wait for its event.
        """
        handler = _Handler(self)
        observer: BaseObserver
        if self.polling:
            observer = PollingObserver(timeout=POLL_SECONDS)
        elif INOTIFY:
            observer = _inotify_observer()
        else:
            observer = Observer()
        observer.schedule(handler, str(self.inbox), recursive=False)
        observer.daemon = True  # never keep the process alive on its own
        observer.start()
        probe = self.inbox / PROBE
        for _ in range(int(PROBE_WAIT_SECONDS / POLL_SECONDS)):
            probe.write_bytes(b"")
            if handler.probed.wait(POLL_SECONDS * 1.5):
                break
        else:
            logger.warning("the inbox observer shows no event yet; the rescan covers it")
        probe.unlink(missing_ok=True)
        return observer

    def _loop(self, watch: bool) -> None:
        next_scan = time.monotonic() + self.rescan_seconds
        while not self._stop.wait(TICK_SECONDS):
            with self._lock:
                waiting = list(self._quiet)
            for path in waiting:
                self._settle(path)
            if watch and self._observer is not None and not self._observer.is_alive():
                logger.error("the inbox observer stopped; starting a new one and rescanning")
                self._observer = self._start_observer()
                next_scan = 0
            if watch and time.monotonic() >= next_scan:
                self.scan()
                next_scan = time.monotonic() + self.rescan_seconds

    @property
    def observer(self) -> BaseObserver | None:
        return self._observer


class _Handler(FileSystemEventHandler):
    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.probed = threading.Event()

    def dispatch(self, event: FileSystemEvent) -> None:
        if _path(event.src_path).name == PROBE:
            self.probed.set()
            return
        super().dispatch(event)

    def _complete(self, raw: str | bytes) -> None:
        path = _path(raw)
        if path.parent == self.intake.inbox and not is_ignored(path.name):
            self.intake.offer(path)

    def on_closed(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileClosedEvent):
            self._complete(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        # With full events our own claim is a move *to* "": a path outside the inbox, ignored.
        if isinstance(event, FileMovedEvent):
            if self.intake.polling:  # a polling observer cannot tell a move from a copy
                self.intake.consider(_path(event.dest_path))
            else:
                self._complete(event.dest_path)

    def on_created(self, event: FileSystemEvent) -> None:
        # A file being written: its close event says when it is complete. Where moves in show
        # up as "created" (no full events), an old mtime lets them through the quiet period.
        if isinstance(event, FileCreatedEvent):
            self.intake.consider(_path(event.src_path))

    def on_modified(self, event: FileSystemEvent) -> None:
        if self.intake.polling and isinstance(event, FileModifiedEvent):
            self.intake.consider(_path(event.src_path))

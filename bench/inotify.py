"""A minimal inotify(7) reader: the moment each file arrives in, or leaves, a folder.

Why not a watchdog observer: watchdog holds every unpaired IN_MOVED_FROM for 0.5 s
(``InotifyMoveEventGrouper.delay``) while it waits for a matching IN_MOVED_TO, and a file renamed
into ``processing/`` (which it does not watch) never gets one. A watchdog observer would thus
add 500 ms to every reading. Here the kernel's event is timestamped as soon as it is read.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
import time
from collections.abc import Callable

IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
MOVED_OUT = IN_MOVED_FROM | IN_DELETE  # a claim (a rename out of the folder), a removal
ARRIVED = IN_CREATE | IN_MOVED_TO  # a link or a new file, a rename into the folder
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, length of the name

Clock = Callable[[], float]


class TimedReader:
    """A file descriptor read on a thread of its own as soon as poll(2) says it is readable,
    each read timestamped by ``clock`` at that moment. A subclass says how to read it
    (``_take``) and how to let it go (``_release``); ``_lock`` guards what it keeps."""

    def __init__(self, fd: int, clock: Clock, name: str) -> None:
        self._fd = fd
        self._clock = clock
        self._wake_r, self._wake_w = os.pipe()
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            now = self._clock()
            if self._wake_r in ready:
                return
            self._take(now)

    def _take(self, now: float) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        os.close(self._fd)

    def close(self) -> None:
        os.write(self._wake_w, b"!")
        self._thread.join(timeout=5)
        self._release()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)


class FileEvents(TimedReader):
    """Records, per file name, the first time an event of ``mask`` named it in ``folder``
    (by ``clock``); with ``skip_hidden``, names that start with a dot (temporary files) are
    left out."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        mask: int,
        clock: Clock = time.monotonic,
        skip_hidden: bool = False,
    ) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if int(libc.inotify_add_watch(fd, os.fsencode(folder), mask)) < 0:
            error = ctypes.get_errno()
            os.close(fd)
            raise OSError(error, f"inotify_add_watch {os.fsdecode(folder)} failed")
        self._skip_hidden = skip_hidden
        self._seen: dict[str, float] = {}
        super().__init__(fd, clock, f"inotify {os.path.basename(folder)}")

    def _take(self, now: float) -> None:
        try:
            buffer = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        offset = 0
        names = []
        while offset + _HEADER.size <= len(buffer):
            _, _, _, length = _HEADER.unpack_from(buffer, offset)
            start = offset + _HEADER.size
            names.append(os.fsdecode(buffer[start : start + length].rstrip(b"\0")))
            offset = start + length
        with self._lock:
            for name in names:
                if not (self._skip_hidden and name.startswith(".")):
                    self._seen.setdefault(name, now)
            self._lock.notify_all()

    def times(self) -> dict[str, float]:
        """Every name seen so far, with its time."""
        with self._lock:
            return dict(self._seen)

    def count(self, suffix: str) -> int:
        """How many names seen so far end with ``suffix``."""
        with self._lock:
            return sum(name.endswith(suffix) for name in self._seen)

    def wait_for(self, name: str, timeout: float) -> float | None:
        """When ``name`` was seen (by the clock), or None after ``timeout``."""
        with self._lock:
            self._lock.wait_for(lambda: name in self._seen, timeout)
            return self._seen.get(name)

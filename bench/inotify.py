"""A minimal inotify(7) reader: the moment each file leaves a folder.

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

IN_MOVED_FROM = 0x00000040
IN_DELETE = 0x00000200
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, length of the name


class MovedOut:
    """Records, per file name, when it was moved or deleted out of ``folder``."""

    def __init__(self, folder: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        watch = int(
            libc.inotify_add_watch(self._fd, os.fsencode(folder), IN_MOVED_FROM | IN_DELETE)
        )
        if watch < 0:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder} failed")
        self._wake_r, self._wake_w = os.pipe()
        self._lock = threading.Condition()
        self._seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._read, name="moved-out", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            now = time.perf_counter()
            if self._wake_r in ready:
                return
            try:
                buffer = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            offset = 0
            names = []
            while offset + _HEADER.size <= len(buffer):
                _, _, _, length = _HEADER.unpack_from(buffer, offset)
                start = offset + _HEADER.size
                names.append(os.fsdecode(buffer[start : start + length].rstrip(b"\0")))
                offset = start + length
            with self._lock:
                for name in names:
                    self._seen.setdefault(name, now)
                self._lock.notify_all()

    def wait_for(self, name: str, timeout: float) -> float | None:
        """When ``name`` left the folder (perf_counter), or None after ``timeout``."""
        with self._lock:
            self._lock.wait_for(lambda: name in self._seen, timeout)
            return self._seen.get(name)

    def close(self) -> None:
        os.write(self._wake_w, b"!")
        self._thread.join(timeout=5)
        for fd in (self._fd, self._wake_r, self._wake_w):
            os.close(fd)

"""A message when the queue pauses and when it resumes (``SORA_NOTIFY``, Apprise URLs).

A paused queue makes nothing, quietly: the session expired, the quota ran out, a limit was
hit. Without a word sent somewhere a person looks (e-mail, Telegram, Slack, ntfy ...), nobody
learns it a week later. So: one message when it pauses, one when it goes on again.

The worker must never wait on a mail server: messages go on a queue that a daemon thread
sends, in order. A message that cannot be sent is logged and dropped, never raised. A daemon
that pauses again and again for the same cause (it tries every few minutes) says it once.

An Apprise URL often carries a token or a password: only its scheme is ever shown.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

from sora_watcher.options import ConfigError
from sora_watcher.status import age, when

if TYPE_CHECKING:  # Apprise is loaded only when SORA_NOTIFY names somewhere to tell
    import apprise

WARNING, SUCCESS = "warning", "success"  # Apprise's NotifyType values: the message's colour

NO_HINT = (
    "see the log and `sora-watcher status`; the queue goes on by itself once the cause is gone."
)


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    kind: str  # an Apprise NotifyType's value


@dataclass(frozen=True)
class Target:
    number: int  # its place in SORA_NOTIFY, from 1
    scheme: str  # what may be shown of the URL
    service: apprise.Apprise


def scheme_of(url: str) -> str:
    """``mailto`` of ``mailto://...``; "" when what comes before ``://`` is no scheme (it
    might be a pasted secret)."""
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]{0,31})://", url)
    return match[1].lower() if match else ""


def target(index: int, url: str) -> Target:
    """One URL, read by Apprise; a ConfigError that shows its scheme, never the URL."""
    import apprise  # a heavy import (its plug-ins): here, not for every daemon that alerts none

    scheme = scheme_of(url)
    service = apprise.Apprise()
    # Without a scheme Apprise would log the text as it is: it is not even tried.
    if not scheme or not service.add(url):
        shown = f"a {scheme}:// URL" if scheme else "a text that is not a URL (scheme://...)"
        raise ConfigError(
            f"SORA_NOTIFY: the URL number {index} is {shown} that Apprise cannot read; "
            "see https://github.com/caronc/apprise/wiki for the forms it knows"
        )
    return Target(index, scheme, service)


class Alerts:
    """Tells the ``urls`` when the queue of ``worker`` pauses and resumes. No URL: does nothing."""

    def __init__(self, urls: tuple[str, ...], worker: str) -> None:
        self.targets = [target(i, url) for i, url in enumerate(urls, start=1)]
        self.worker = worker
        self._lock = threading.Lock()
        self._reason: str | None = None  # the cause of the pause told last; None: not paused
        self._since = 0.0  # when this pause began (wall clock: it is shown)
        self._closed = False
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        if self.targets:
            self._thread = threading.Thread(target=self._send_all, name="alerts", daemon=True)
            self._thread.start()

    def paused(self, name: str, detail: str, hint: str | None) -> None:
        """The queue paused because of ``name`` (an error class); said once per cause."""
        with self._lock:  # the state and the order of the messages change together
            if self._reason == name:
                return  # the same cause again: already said
            if self._reason is None:
                self._since = time.time()
            self._reason = name
            self._put(
                Message(
                    f"sora-watcher paused: {name}",
                    f"The queue of worker {self.worker} paused at {when(time.time())}: nothing "
                    f"is made until this is fixed.\nWhy: {name}: {detail}\n"
                    f"What to do: {hint or NO_HINT}",
                    WARNING,
                )
            )

    def resumed(self) -> None:
        """The queue goes on again (said only if a pause was said)."""
        with self._lock:
            if self._reason is None:
                return
            paused_for = age(max(0.0, time.time() - self._since))
            self._put(
                Message(
                    "sora-watcher resumed",
                    f"The queue of worker {self.worker} resumed at {when(time.time())}, after "
                    f"{paused_for} paused ({self._reason}).",
                    SUCCESS,
                )
            )
            self._reason = None

    def close(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` s for the messages still being sent; then send no more."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._thread is not None:
                self._queue.put(None)  # after every message already queued
        if self._thread is not None:
            self._thread.join(timeout)

    def _put(self, message: Message) -> None:
        """Queue a message for the thread (under ``_lock``)."""
        if self._thread is not None and not self._closed:
            self._queue.put(message)

    def _send_all(self) -> None:
        while (message := self._queue.get()) is not None:
            for each in self.targets:
                self._send(each, message)

    def _send(self, each: Target, message: Message) -> None:
        try:
            sent = bool(
                each.service.notify(
                    body=message.body, title=message.title, notify_type=message.kind
                )
            )
        except Exception as exc:  # a plug-in's bug must not end the thread
            # Only the class: an exception's text may quote the URL, token and all.
            sent, why = False, exc.__class__.__name__
        else:
            why = "refused or unreachable"
        if not sent:
            logger.warning(
                "alert {!r} not sent to {}:// (URL number {} of SORA_NOTIFY): {}",
                message.title,
                each.scheme,
                each.number,
                why,
            )

"""Webhooks that a crash cannot lose: the outbox.

When a job ends, ``announce`` writes one small file per receiver into the outbox folder, whole
and flushed to disk, before anything is sent: ``<msg id>.<n>.json`` (``n``: 0 the job's own
``callback_url``, 1 ``SORA_WEBHOOK_URL``). A thread then sends what is due. A 2xx removes the
file; anything else writes the attempt back with the next time to try, later and later (x5,
at most an hour apart), until ``SORA_WEBHOOK_MAX_AGE`` has passed: the file then goes to
``failed/`` with the reason, for a person to look at.

Each attempt is signed as the Standard Webhooks specification says (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``), with that attempt's time, since receivers refuse
old timestamps. The id is the same for every attempt and for the same end announced twice (the
daemon re-runs a finish after a crash): the receiver drops what it has already seen. So a
restart, or a kill -9 at any moment, sends a message at least once, never zero times.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from loguru import logger

from sora_watcher import metrics
from sora_watcher.atomic import fsync_folder, write_atomically
from sora_watcher.job_view import moment
from sora_watcher.options import ConfigError
from sora_watcher.records import JobStatus, Record
from sora_watcher.service_settings import ServiceSettings

if TYPE_CHECKING:  # loaded when first needed: a daemon that never sends one pays nothing
    import httpx
    from standardwebhooks import Webhook

FAILED = "failed"
PATTERN = "msg_*.json"  # a delivery; the hidden ``.part`` files of a write are not
TIMEOUT = 10.0  # seconds for one POST, connecting included
GROWTH = 5  # each retry waits this many times longer than the one before ...
CAP = 3600.0  # ... but never more than an hour
JITTER = 0.1  # +/- 10 %, so that many deliveries failing together do not retry together
REASON_BODY = 200  # characters of a refusing receiver's answer kept as the reason
STOP_CHECK = 1.0  # seconds: how soon the thread notices ``stop`` when nobody wakes it
JOB_ID = re.compile(r"msg_(?P<job>job_[0-9a-f]+)_\d+")
SECRET_HELP = (
    "SORA_WEBHOOK_SECRET is not a secret the Standard Webhooks library can use: write whsec_ "
    "followed by base64 (make one with: echo whsec_$(openssl rand -base64 32)), or leave it "
    "empty to send unsigned webhooks"
)


# -- the secret ---------------------------------------------------------------------------------


def secret_key(secret: str) -> bytes:
    """The signing key of ``whsec_<base64>`` or of the bare base64, as the library reads it.

    The library decodes leniently: it drops characters that are not base64, so a secret like
    ``my-password`` would quietly sign with another key than a stricter receiver's. Refused
    here instead, without quoting it (it is a secret).
    """
    body = secret.strip().removeprefix("whsec_").rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9+/]+", body) or len(body) % 4 == 1:
        raise ConfigError(SECRET_HELP)
    return base64.b64decode(body + "=" * (-len(body) % 4))


def signer(service: ServiceSettings) -> Webhook | None:
    from standardwebhooks import Webhook  # loaded by the daemons that sign, only

    """What signs the webhooks; None without a secret (they are then sent unsigned)."""
    if not service.webhook_secret:
        return None
    return Webhook(secret_key(service.webhook_secret))


def signed(service: ServiceSettings) -> bool:
    """Whether webhooks are signed (the daemon warns once at start when they are not)."""
    return bool(service.webhook_secret)


# -- one delivery on disk -----------------------------------------------------------------------


@dataclass
class Delivery:
    """One message for one receiver: the file ``<id>.<n>.json``."""

    id: str  # the webhook-id: the same for every attempt
    url: str
    payload: str  # the exact text sent (and signed)
    created_at: float
    attempts: int = 0
    next_at: float = 0.0
    last_error: str | None = None

    @property
    def job(self) -> str:
        match = JOB_ID.fullmatch(self.id)
        return match["job"] if match else self.id

    @classmethod
    def read(cls, path: Path) -> Delivery:
        data = json.loads(path.read_text("utf-8"))
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})

    def write(self, path: Path, **extra: Any) -> None:
        data = json.dumps({**asdict(self), **extra}, indent=1)
        write_atomically(path, data.encode("utf-8"))
        fsync_folder(path.parent)  # the rename into place survives a power cut too


def counts(folder: Path) -> dict[str, int]:
    """Deliveries waiting to be sent and deliveries given up on: for ``status`` and /metrics."""
    return {
        "pending": len(list(folder.glob(PATTERN))),
        "failed": len(list((folder / FAILED).glob(PATTERN))),
    }


def shown(url: str) -> str:
    """The URL for a log line: without its query, fragment or user:password, which may carry
    a token."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "(an invalid URL)"


def delay(service: ServiceSettings, attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 5 s, 25 s, 2 min, 10 min,
    52 min, then every hour with the defaults, +/- 10 %."""
    growth = float(GROWTH) ** min(attempts - 1, 32)  # bounded: a float, never an overflow
    wait = min(service.webhook_retry * growth, max(CAP, service.webhook_retry))
    return wait * random.uniform(1 - JITTER, 1 + JITTER)


# -- the outbox ---------------------------------------------------------------------------------


class Outbox:
    """The outbox folder and the thread that empties it."""

    def __init__(
        self, folder: Path, service: ServiceSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.folder = folder
        self.service = service
        self.clock = clock
        self.signer = signer(service)  # a secret the library cannot use fails here
        self.delivered: dict[str, int] = {"delivered": 0, "retry": 0, "failed": 0}
        self.said_unsigned = False  # the warning about a missing secret, once per run
        self._lock = threading.Lock()  # announce and the thread write the same files
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None  # used by one thread only: the sender
        folder.mkdir(parents=True, exist_ok=True)

    # -- writing ------------------------------------------------------------------------------

    def announce(self, record: Record, job: dict[str, Any]) -> list[Path]:
        """A job ended: one delivery file per receiver, on disk before this returns."""
        if not record.state.ended:
            raise ValueError(f"{record.id} has not ended ({record.state.value})")
        now = self.clock()
        kind = "job.done" if record.state is JobStatus.DONE else "job.failed"
        payload = json.dumps(  # ASCII: a prompt may hold a lone surrogate, which has no UTF-8
            {"type": kind, "timestamp": moment(now), "data": job}, separators=(",", ":")
        )
        message = f"msg_{record.id}_{record.runs}"
        paths = []
        for number, url in self.targets(record):
            path = self.folder / f"{message}.{number}.json"
            with self._lock:
                self.write_new(path, Delivery(message, url, payload, now, next_at=now))
            paths.append(path)
        if paths:
            self._wake.set()
            if self.signer is None and not self.said_unsigned:
                self.said_unsigned = True
                logger.warning(
                    "webhooks are sent unsigned: set SORA_WEBHOOK_SECRET (whsec_...) so that "
                    "their receivers can tell them from forgeries"
                )
        return paths

    def targets(self, record: Record) -> Iterator[tuple[int, str]]:
        if record.callback_url:
            yield 0, record.callback_url
        # The same URL twice would only receive the same message twice.
        if self.service.webhook_url and self.service.webhook_url != record.callback_url:
            yield 1, self.service.webhook_url

    def write_new(self, path: Path, delivery: Delivery) -> None:
        """Write ``delivery``; the same end announced again keeps the tries it had, so that
        its age still counts from the first announce."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            before = Delivery.read(path)
            delivery.created_at, delivery.attempts = before.created_at, before.attempts
            delivery.last_error = before.last_error
        delivery.write(path)

    def count(self, outcome: str) -> None:
        self.delivered[outcome] += 1
        metrics.webhook_attempt(outcome)

    # -- sending ------------------------------------------------------------------------------

    def deliver_due(self) -> float | None:
        """One pass: send every due delivery. Seconds until the next one is due; None if none
        is pending."""
        soonest: float | None = None
        for path in sorted(self.folder.glob(PATTERN)):
            if self._stopping():
                break
            try:
                next_at = self.deliver_one(path)
            except Exception as exc:  # one odd file must not hold up the others
                logger.exception("webhook {}: {}", path.name, exc)
                next_at = self.clock() + self.service.webhook_retry
            if next_at is not None:
                soonest = next_at if soonest is None else min(soonest, next_at)
        return None if soonest is None else max(0.0, soonest - self.clock())

    def deliver_one(self, path: Path) -> float | None:
        """Send ``path`` if it is due: when it is due next (None: no longer pending)."""
        try:
            delivery = Delivery.read(path)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:  # not ours, or edited by hand
            logger.warning("webhook {} cannot be read ({}): moved to failed/", path.name, exc)
            self.folder.joinpath(FAILED).mkdir(exist_ok=True)
            path.replace(self.folder / FAILED / path.name)
            self.count("failed")
            return None
        now = self.clock()
        if delivery.next_at > now:
            return delivery.next_at
        reason, permanent = self.post(delivery)
        if reason is None:
            with self._lock:
                path.unlink(missing_ok=True)
            self.count("delivered")
            logger.info("webhook for {} delivered to {}", delivery.job, shown(delivery.url))
            return None
        return self.failed_attempt(path, delivery, reason, permanent)

    @property
    def client(self) -> httpx.Client:
        import httpx  # loaded by the first delivery, not by every daemon start

        """Made at the first POST and kept: its connections are reused."""
        if self._client is None:
            self._client = httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        return self._client

    def post(self, delivery: Delivery) -> tuple[str | None, bool]:
        """Send one attempt: (None, _) when the receiver took it, else (the reason, whether
        trying again cannot help)."""
        import httpx

        sent_at = int(self.clock())  # each attempt's own: receivers refuse old timestamps
        headers = {
            "webhook-id": delivery.id,
            "webhook-timestamp": str(sent_at),
            "content-type": "application/json",
            "user-agent": "sora-watcher",
        }
        if self.signer is not None:
            at = datetime.fromtimestamp(sent_at, tz=timezone.utc)
            headers["webhook-signature"] = self.signer.sign(delivery.id, at, delivery.payload)
        try:
            answer = self.client.post(
                delivery.url, content=delivery.payload.encode("utf-8"), headers=headers
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return self.scrubbed(f"{type(exc).__name__}: {exc}", delivery.url), True
        except httpx.HTTPError as exc:
            return self.scrubbed(f"{type(exc).__name__}: {exc}", delivery.url), False
        if answer.is_success:
            return None, False
        # 410 Gone: the receiver says it is gone for good (Standard Webhooks: stop sending).
        gone = answer.status_code == 410
        return f"HTTP {answer.status_code}: {answer.text[:REASON_BODY]}", gone

    @staticmethod
    def scrubbed(reason: str, url: str) -> str:
        """A network error's message names the URL at times: show it as in the logs."""
        return reason.replace(url, shown(url)) if url else reason

    def failed_attempt(
        self, path: Path, delivery: Delivery, reason: str, permanent: bool
    ) -> float | None:
        now = self.clock()
        delivery.attempts += 1
        delivery.last_error = reason
        give_up = delivery.created_at + self.service.webhook_max_age
        if permanent or now >= give_up:
            self.give_up(path, delivery, now)
            return None
        # The last try is made when the maximum age is reached, not an hour short of it.
        delivery.next_at = min(now + delay(self.service, delivery.attempts), give_up)
        with self._lock:
            delivery.write(path)
        self.count("retry")
        logger.warning(
            "webhook for {} to {} not delivered ({}), try {}; next in {:.0f}s",
            delivery.job,
            shown(delivery.url),
            reason,
            delivery.attempts,
            delivery.next_at - now,
        )
        return delivery.next_at

    def give_up(self, path: Path, delivery: Delivery, now: float) -> None:
        """Keep the delivery in failed/, with its reason, and stop trying."""
        kept = self.folder / FAILED / path.name
        with self._lock:
            kept.parent.mkdir(exist_ok=True)
            delivery.write(kept, failed_at=now)
            path.unlink(missing_ok=True)
            fsync_folder(self.folder)
        self.count("failed")
        logger.warning(
            "webhook for {} to {} given up after {} tries ({}): kept in {}",
            delivery.job,
            shown(delivery.url),
            delivery.attempts,
            delivery.last_error,
            kept,
        )

    def counts(self) -> dict[str, int]:
        return counts(self.folder)

    # -- the thread ---------------------------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        """Send in a thread until ``stop`` is set (or ``close``): at once when something is
        announced, else when the next delivery is due."""
        self._stop = stop
        self._closing.clear()
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread. A POST under way may outlast the join (its timeout is 10 s): its
        file stays, and is sent again on the next start."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def flush(self) -> None:
        """Stop the thread, then one last pass on this one: ``once`` tries what it announced
        before it exits (what fails is tried at the next start)."""
        self.close()
        self._stop = None
        self._closing.clear()
        try:
            self.deliver_due()
        finally:
            self.close()

    def _stopping(self) -> bool:
        return self._closing.is_set() or (self._stop is not None and self._stop.is_set())

    def _run(self) -> None:
        while not self._stopping():
            self._wake.clear()  # before the pass: a file announced after it wakes the next
            try:
                wait = self.deliver_due()
            except Exception as exc:  # the thread never dies: a pass is tried again
                logger.exception("webhooks: {}", exc)
                wait = self.service.webhook_retry
            self._sleep(wait)

    def _sleep(self, seconds: float | None) -> None:
        """Until woken, stopped, or ``seconds`` passed (None: until woken or stopped)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self._stopping():
            left = STOP_CHECK if deadline is None else deadline - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, STOP_CHECK)):
                return

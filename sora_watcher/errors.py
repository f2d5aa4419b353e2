"""The errors a generation can end with, whatever backend makes the images.

What matters to the daemon is which of three families an error belongs to, because each is
handled differently::

    GenerationError
    ├── PermanentError          the input or the prompt will never succeed as it is: failed/
    │   ├── ContentRejected     refused by the service's policy (moderation)
    │   ├── InvalidRequest      the service refused a parameter of the request
    │   └── TaskFailed          the generation ended as failed for another stated reason
    ├── TransientError          worth another try later, with backoff
    │   ├── GenerationTimeout   no result in time
    │   ├── Overloaded          HTTP 5xx, "heavy load"
    │   ├── Unreachable         the service, the browser or the network failed
    │   └── DownloadFailed      the image could not be fetched, or is not a whole image
    └── QueueStopError          nothing is wrong with the input: stop taking work until fixed
        ├── CredentialsMissing  no session file, no API key
        ├── CredentialsRefused  the service does not accept them (any more)
        ├── AccessDenied        the account may not use this (organization not verified ...)
        ├── ModelUnavailable    the model is unknown or retired
        ├── QuotaExceeded       billing: no call will work until the account is topped up
        ├── DailyLimitReached   SORA_DAILY_LIMIT images today
        └── RateLimited         a limit that lifts by itself (with its reset delay if given)
            └── ConcurrencyLimited  too many at once: fewer in flight, not a pause

    Interrupted (a BaseException)  the daemon is stopping: the generation was abandoned

A backend raises these, or subclasses of its own that keep its site's names in the log (the
Sora web backend's ``SessionExpired`` is a ``CredentialsRefused``). Every error carries
``detail``, the service's own words where there are some, so that the log says what really
happened. A queue-stopping error carries its ``Resume``: how the daemon knows it may go on,
without knowing anything about sessions, keys or sites.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Fingerprint = tuple[int, int]  # a file's (st_mtime_ns, st_ino): see folders.fingerprint


@dataclass(frozen=True)
class Resume:
    """How a paused queue knows it may go on. The first of these that is set is used:

    - ``file``: when the file appears, or is no longer the version ``seen`` (a new
      session.json, an edited .env);
    - ``probe``: when this call answers True, asked every ``every`` seconds (a key or a model
      accepted again); it must cost nothing;
    - ``after``: after that many seconds (a limit's reset time);
    - none: after ``SORA_PAUSE_SECONDS``.
    """

    after: float | None = None
    probe: Callable[[], bool] | None = None
    every: float = 60.0
    file: Path | None = None
    seen: Fingerprint | None = None
    hint: str = ""  # what the user should do, logged when the queue pauses


class GenerationError(Exception):
    """Base of every error raised by a generation backend."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def name(self) -> str:
        return type(self).__name__


class PermanentError(GenerationError):
    """Retrying the same prompt will not help."""


class ContentRejected(PermanentError):
    pass


class InvalidRequest(PermanentError):
    pass


class TaskFailed(PermanentError):
    pass


class TransientError(GenerationError):
    """Retrying later may succeed.

    ``retry_after``: seconds the service asked us to wait, if it said (else the backoff).
    ``max_retries``: the most retries this error allows its prompt, if fewer than the
    settings' (``SORA_MAX_RETRIES``): counted with the prompt's other tries.
    """

    def __init__(
        self, detail: str, retry_after: float | None = None, *, max_retries: int | None = None
    ) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.max_retries = max_retries

    def given_up(self, attempts: int) -> GenerationError:
        """What the prompt fails with once its tries are spent: this error, saying so."""
        self.detail += f"; gave up after {attempts} tries"
        return self


class GenerationTimeout(TransientError):
    pass


class Overloaded(TransientError):
    pass


class Unreachable(TransientError):
    pass


class DownloadFailed(TransientError):
    pass


class QueueStopError(GenerationError):
    """The queue must pause until ``resume`` says it may go on; no input is blamed."""

    default_resume = Resume()

    def __init__(
        self, detail: str, resume: Resume | None = None, *, resume_after: float | None = None
    ) -> None:
        super().__init__(detail)
        if resume is None and resume_after is not None:
            resume = Resume(after=resume_after)
        self.resume = resume or self.default_resume

    @property
    def resume_after(self) -> float | None:
        return self.resume.after


class CredentialsMissing(QueueStopError):
    pass


class CredentialsRefused(QueueStopError):
    pass


class AccessDenied(QueueStopError):
    pass


class ModelUnavailable(QueueStopError):
    pass


class QuotaExceeded(QueueStopError):
    pass


class DailyLimitReached(QueueStopError):
    pass


class RateLimited(QueueStopError):
    pass


class ConcurrencyLimited(RateLimited):
    """Too many generations at once: fewer in flight for a while, and this one sent again
    after ``retry_after`` seconds (the service's word, else the retry delay). Only with
    nothing of ours in flight does it pause the queue (``resume``)."""

    default_resume = Resume(after=15.0)

    def __init__(
        self,
        detail: str,
        resume: Resume | None = None,
        *,
        resume_after: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail, resume, resume_after=resume_after)
        self.retry_after = retry_after


class Interrupted(BaseException):
    """The daemon is stopping; the generation was abandoned, not failed.

    A ``BaseException``, like ``KeyboardInterrupt``: a broad ``except Exception`` never
    swallows a stop.
    """


HINTS = {  # what to do, by the error's class; others: see what_to_do
    "InputError": "fix this entry and drop the rest again in a new file.",
    "InvalidRequest": "the service refused an option of this entry: fix it and drop it again.",
    "ContentRejected": "the service refused this prompt: reword it.",
    "OverDailyLimit": "ask for fewer variants, or raise SORA_DAILY_LIMIT.",
}


def what_to_do(error_class: str, attempts: int) -> str:
    """The advice for a prompt that failed with ``error_class`` after ``attempts`` retries."""
    return HINTS.get(error_class) or (
        "the backend did not manage it after several tries: drop the file again later."
        if attempts > 0
        else "the service refused this prompt: reword it."
    )

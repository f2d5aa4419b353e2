"""The errors a generation can end with.

What matters to the daemon is which of three families an error belongs to, because each is
handled differently::

    SoraError
    ├── PermanentError        the prompt will never succeed as it is: the input goes to failed/
    │   ├── ContentRejected   Sora refused the prompt or its output (moderation, "Unable to create")
    │   └── TaskFailed        the task ended as failed/cancelled for another stated reason
    ├── TransientError        worth another try later, with backoff
    │   ├── GenerationTimeout no final status within SORA_TIMEOUT
    │   ├── Overloaded        HTTP 5xx / heavy_load
    │   ├── PageError         the page did not load, the browser or the network failed
    │   ├── ElementNotFound   no selector candidate matched (site changed, or a slow page)
    │   └── DownloadFailed    the image could not be fetched or is not an image
    └── QueueStopError        nothing is wrong with the input: stop taking work until fixed
        ├── SessionMissing    no session.json
        ├── SessionExpired    the site does not accept the saved session any more
        ├── CloudflareChallenge       "Just a moment...", "Attention Required"
        ├── PhoneVerificationRequired "Verify your phone number to continue."
        └── RateLimited       daily or credit limit (with a reset delay if given)
            └── ConcurrencyLimited  too many tasks at once: fewer in flight, not a pause

Every error carries ``detail``: the site's own words where there are some, so that the log
says what really happened instead of one vague message.
"""

from __future__ import annotations

SESSION_MISSING_MESSAGE = (
    "[ERREUR] Session inexistante. Merci de vous connecter manuellement à sora.com "
    "et de sauvegarder la session."
)


class SoraError(Exception):
    """Base of every error raised by a generation backend."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def name(self) -> str:
        return type(self).__name__


class PermanentError(SoraError):
    """Retrying the same prompt will not help."""


class ContentRejected(PermanentError):
    pass


class TaskFailed(PermanentError):
    pass


class TransientError(SoraError):
    """Retrying later may succeed."""


class GenerationTimeout(TransientError):
    pass


class Overloaded(TransientError):
    pass


class PageError(TransientError):
    pass


class ElementNotFound(TransientError):
    pass


class DownloadFailed(TransientError):
    pass


class QueueStopError(SoraError):
    """The queue must pause; ``resume_after`` (seconds) says when to try again, if known.

    ``None`` means: wait until the user acts (for example, replaces session.json).
    """

    resume_after: float | None = None

    def __init__(self, detail: str, resume_after: float | None = None) -> None:
        super().__init__(detail)
        if resume_after is not None:
            self.resume_after = resume_after


class SessionMissing(QueueStopError):
    def __init__(self, detail: str = SESSION_MISSING_MESSAGE) -> None:
        super().__init__(detail)


class SessionExpired(QueueStopError):
    pass


class CloudflareChallenge(QueueStopError):
    pass


class PhoneVerificationRequired(QueueStopError):
    pass


class RateLimited(QueueStopError):
    pass


class ConcurrencyLimited(RateLimited):
    """ "You already have 3 generations in progress": wait for one of ours to finish."""

    resume_after: float | None = 15.0


class Interrupted(Exception):
    """The daemon is stopping; the generation was abandoned, not failed."""

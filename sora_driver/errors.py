"""The web backends' own names for the core's errors (``sora_watcher.errors``).

The log and the error files keep the names they always had for the Sora site; the parts
shared by every web backend (browser, session, locate) raise them too::

    TransientError
    ├── PageError             the page did not load, the browser or the network failed
    └── ElementNotFound       no selector candidate matched (site changed, or a slow page)
    CredentialsMissing
    └── SessionMissing        no session.json
    CredentialsRefused
    └── SessionExpired        the site does not accept the saved session any more
    QueueStopError
    ├── CloudflareChallenge       "Just a moment...", "Attention Required"
    └── PhoneVerificationRequired "Verify your phone number to continue."
"""

from __future__ import annotations

from sora_watcher.errors import (
    CredentialsMissing,
    CredentialsRefused,
    QueueStopError,
    TransientError,
    Unreachable,
)


def session_missing_message(site: str) -> str:
    """The users' words for a missing session, naming the site to log in to."""
    return (
        f"[ERREUR] Session inexistante. Merci de vous connecter manuellement à {site} "
        "et de sauvegarder la session."
    )


SESSION_MISSING_MESSAGE = session_missing_message("sora.com")


class PageError(Unreachable):
    pass


class ElementNotFound(TransientError):
    pass


class SessionMissing(CredentialsMissing):
    def __init__(self, detail: str = SESSION_MISSING_MESSAGE) -> None:
        super().__init__(detail)


class SessionExpired(CredentialsRefused):
    pass


class CloudflareChallenge(QueueStopError):
    pass


class PhoneVerificationRequired(QueueStopError):
    pass

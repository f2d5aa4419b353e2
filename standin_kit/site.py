"""The facade of a web site's stand-in (Sora, ChatGPT): what a test or a demo switches on it.

Both sites are driven the same way: scenarios armed for the next N occurrences (a Switches
table of the site's own), a page variant (the DOM the site's app.js builds, among the site's
own choices), sessions signed
with a secret that revoke_sessions() changes, and the e-mail each user logged in with. What
the site does with them (its routes, its answers) is its own server.py.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

from . import sessions
from .serving import StandInApp
from .switches import Switches

# A site's page variants: key -> accepted values, the first being the default page.
PageVariants = Mapping[str, tuple[Any, ...]]


def check_page_variant(variant: Any, variants: PageVariants) -> dict[str, Any]:
    """A validated copy of a page variant; raises ValueError naming what is accepted."""
    if not isinstance(variant, dict):
        raise ValueError("the page variant must be an object")
    for key, value in variant.items():
        allowed = variants.get(key)
        if allowed is None:
            raise ValueError(f"unknown page variant {key!r} (valid: {', '.join(variants)})")
        # Compare types too: 1 == True would otherwise pass for a boolean key.
        if not any(type(value) is type(a) and value == a for a in allowed):
            choices = ", ".join(repr(a) for a in allowed)
            raise ValueError(f"page variant {key}={value!r} is not one of {choices}")
    return dict(variant)


class SiteStandIn(StandInApp):
    """A web site's stand-in, served from a daemon thread; every method is thread-safe."""

    def __init__(
        self,
        host: str,
        port: int,
        handler_class: type[BaseHTTPRequestHandler],
        *,
        scenarios: Switches,
        page_variants: PageVariants,
        delay: float,
        secret: str,
        verbose: bool,
    ) -> None:
        super().__init__(host, port, handler_class, join_timeout=5)
        self.delay = delay
        self.secret = secret
        self.verbose = verbose  # log every request to stderr
        self._scenarios = scenarios
        self._page_variants = page_variants
        self._page_variant: dict[str, Any] = {}
        # Guards this class's state and that of the site's subclass.
        self._lock = threading.Lock()
        self._emails: dict[str, str] = {}
        self._revocations = 0

    def storage_state(
        self, user: str = "demo", valid_for: float = sessions.SESSION_LIFETIME
    ) -> dict[str, Any]:
        """A Playwright storage_state with a valid session cookie for this stand-in."""
        return sessions.make_storage_state(self.base_url, user, self.session_secret, valid_for)

    # --- failure modes and page variants (see the site's scenarios.py) --------------------

    def scenario(self, name: str, count: int | None = 1, **params: Any) -> None:
        """Arm a failure mode for the next `count` occurrences (None: until cleared)."""
        self._scenarios.arm(name, count, params)

    def clear_scenarios(self) -> None:
        self._scenarios.clear()

    def armed_scenarios(self) -> dict[str, dict[str, Any]]:
        """{name: {"remaining": n or None, "params": {...}}} for what is still armed."""
        return self._scenarios.snapshot()

    def fire(self, *names: str) -> tuple[str, dict[str, Any]] | None:
        """Consume one occurrence of the earliest armed of `names`: (name, params) or None."""
        return self._scenarios.take(names)

    @property
    def page_variant(self) -> dict[str, Any]:
        """DOM variants of the site's page; {} is the default page."""
        return self._page_variant

    @page_variant.setter
    def page_variant(self, variant: dict[str, Any]) -> None:
        self._page_variant = check_page_variant(variant, self._page_variants)

    def checked_page_variant(self) -> dict[str, Any]:
        """The page variant checked again: it is a plain dict that tests may edit in place."""
        return check_page_variant(self._page_variant, self._page_variants)

    # --- sessions ---------------------------------------------------------------------------

    @property
    def session_secret(self) -> str:
        """Signs session cookies and bearer tokens; revoke_sessions() changes it.

        URLs of images keep the plain secret: like the real signed CDN URLs, they do not
        depend on the session.
        """
        with self._lock:
            revocations = self._revocations
        return self.secret if revocations == 0 else f"{self.secret}#revoked-{revocations}"

    def revoke_sessions(self) -> None:
        """Every session cookie and token issued so far stops working; new ones work."""
        with self._lock:
            self._revocations += 1

    def email_of(self, user: str) -> str:
        with self._lock:
            return self._emails.get(user, f"{user}@example.com")

    def remember_email(self, user: str, email: str) -> None:
        with self._lock:
            self._emails[user] = email

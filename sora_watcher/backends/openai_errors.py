"""What the Images API answers, as the daemon's errors: a table from (status, code) to a
family, each error with the API's own words and, for a stop of the queue, how it resumes.

Nothing of the key leaves this module: every text taken from an answer or an exception goes
through ``redact`` first, and URLs are shown without their user, password or query.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sora_watcher import logs
from sora_watcher.errors import (
    AccessDenied,
    ConcurrencyLimited,
    ContentRejected,
    CredentialsRefused,
    GenerationError,
    GenerationTimeout,
    InvalidRequest,
    ModelUnavailable,
    Overloaded,
    QueueStopError,
    QuotaExceeded,
    Resume,
    Unreachable,
)

VERIFY_URL = "https://platform.openai.com/settings/organization/general"
BILLING_URL = "https://platform.openai.com/settings/organization/billing"
KEYS_URL = "https://platform.openai.com/api-keys"
INPUT_STATUSES = (400, 413, 422)  # the request itself was refused: that input's fault

if TYPE_CHECKING:  # the package is loaded by the time there is an answer to classify
    import openai

    Meaning = Callable[["Classifier", str, openai.APIStatusError, str], GenerationError]


class EndpointNotFound(QueueStopError):
    """A 404 that does not name a model: OPENAI_BASE_URL points at something else."""


def redact(text: str, key: str) -> str:
    """``text`` without the key, nor anything shaped like one (the API quotes a masked key)."""
    if key:
        text = text.replace(key, "[redacted key]")
    return logs.redact(text)


def public_url(url: str) -> str:
    """A URL without user, password, query or fragment: what may be logged or kept."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # as written: a bad port must not raise here
    return f"{parts.scheme}://{host}{parts.path}"


def said(exc: openai.APIStatusError) -> str:
    """The API's own words: its message and code, or the title of a page that is not JSON."""
    if isinstance(exc.body, dict):
        message = str(exc.body.get("message") or exc.message)
    else:
        text = exc.response.text or ""
        title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
        message = f"an HTML page: {title[1].strip()}" if title else text[:120]
    code = exc.code or exc.type
    request = f", request {exc.request_id}" if exc.request_id else ""
    return f"HTTP {exc.status_code}: {message.strip()}" + (f" [{code}]" if code else "") + request


def retry_after(exc: openai.APIStatusError) -> float | None:
    """What ``retry-after-ms`` or ``retry-after`` asks, in seconds."""
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return max(float(headers[name]) * scale, 0.0)
        except (KeyError, ValueError):
            continue
    return None


@dataclass(frozen=True)
class Classifier:
    """Maps the package's exceptions to the daemon's errors, with what to do."""

    model: str  # the configured one (a job may choose another)
    base_url: str
    key: str
    timeout: float
    env_file: str
    probe: Callable[[], bool]  # the key and model accepted again? (free)
    probe_every: float

    def error(self, exc: Exception, model: str) -> GenerationError:
        """``model``: the call's."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return GenerationTimeout(f"no answer within {self.timeout:g}s")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            where = public_url(self.base_url)
            return Unreachable(redact(f"{where}: {type(cause).__name__}: {cause}", self.key))
        if not isinstance(exc, openai.APIStatusError):
            return Unreachable(redact(f"{type(exc).__name__}: {exc}", self.key))
        detail = redact(said(exc), self.key)
        for status, code, meaning in RULES:
            if status == exc.status_code and code in (None, exc.code):
                return meaning(self, detail, exc, model)
        if exc.status_code >= 500:
            return self.busy(detail, exc, model)
        if exc.status_code in INPUT_STATUSES:
            return InvalidRequest(detail)
        return Unreachable(detail)  # a proxy's 407, a 402 ...: not the input's fault

    def refused_key(self, detail: str, exc: openai.APIStatusError, model: str) -> GenerationError:
        hint = (
            f"the API refused the key: put a valid OPENAI_API_KEY in {self.env_file} "
            f"(keys: {KEYS_URL}); the queue resumes once it is accepted"
        )
        return CredentialsRefused(detail, self._probing(hint))

    def denied(self, detail: str, exc: openai.APIStatusError, model: str) -> GenerationError:
        if "verif" in detail.lower():
            hint = (
                f"the organization must be verified to use {model}: verify it at "
                f"{VERIFY_URL} (it can take 15 minutes); the queue tries again later"
            )
        else:
            hint = (
                f"the API refused access to {model} for this key: check the key's "
                "permissions and the project's model access; the queue tries again later"
            )
        return AccessDenied(detail, Resume(hint=hint))

    def no_model(self, detail: str, exc: openai.APIStatusError, model: str) -> GenerationError:
        if model != self.model:
            return InvalidRequest(f"the job's model: {detail}")  # that input's fault alone
        hint = (
            f"the model {model} is unknown or retired: set SORA_OPENAI_MODEL to a current "
            "one (gpt-image-2); the queue resumes once it is accepted"
        )
        return ModelUnavailable(detail, self._probing(hint))

    def no_endpoint(self, detail: str, exc: openai.APIStatusError, model: str) -> GenerationError:
        hint = (
            f"{public_url(self.base_url)} has no Images API: check OPENAI_BASE_URL (it "
            "ends in /v1); the queue resumes once it answers"
        )
        return EndpointNotFound(detail, self._probing(hint))

    def no_quota(self, detail: str, exc: openai.APIStatusError, model: str) -> GenerationError:
        hint = (
            f"the account's quota is used up: add credit at {BILLING_URL}; the queue "
            "tries again after SORA_PAUSE_SECONDS (a refused call is not billed)"
        )
        return QuotaExceeded(detail, Resume(hint=hint))

    def busy(self, detail: str, exc: openai.APIStatusError, model: str) -> GenerationError:
        return Overloaded(detail, retry_after=retry_after(exc))

    def too_many(self, detail: str, exc: openai.APIStatusError, model: str) -> GenerationError:
        return ConcurrencyLimited(detail, retry_after=retry_after(exc) or 1.0)

    def _probing(self, hint: str) -> Resume:
        return Resume(probe=self.probe, every=self.probe_every, hint=hint)


# (status, code or None for any) -> what it means; the first match wins. Not listed: 5xx is
# Overloaded, 400/413/422 InvalidRequest, anything else Unreachable (see Classifier.error).
RULES: list[tuple[int, str | None, Meaning]] = [
    (400, "moderation_blocked", lambda c, detail, e, m: ContentRejected(detail)),
    (400, "content_policy_violation", lambda c, detail, e, m: ContentRejected(detail)),
    (400, "billing_hard_limit_reached", Classifier.no_quota),  # the spending limit
    (401, None, Classifier.refused_key),
    (403, None, Classifier.denied),
    (404, "model_not_found", Classifier.no_model),
    (404, None, Classifier.no_endpoint),
    (429, "insufficient_quota", Classifier.no_quota),
    (429, None, Classifier.too_many),
    (408, None, Classifier.busy),
    (409, None, Classifier.busy),
]

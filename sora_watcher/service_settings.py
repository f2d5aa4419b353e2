"""The service's section of the configuration: what the daemon offers the programs and people
around it, the HTTP API (``server/``), webhooks (``outbox``) and alerts (``alerts``).

Declared once, in ``OPTIONS``, like a backend's section: the ``ServiceSettings`` fields, the
command-line flags and the lines of ``.env.example`` come from it. This module imports no web
library, so that the command line can list the flags without loading FastAPI.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sora_watcher.options import (
    ConfigError,
    Flags,
    Option,
    Table,
    check_fields,
    resolve,
    seconds,
    text_or_none,
    under_home,
)

if TYPE_CHECKING:
    from sora_watcher.config import Settings


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _address(name: str, text: str, _home: Path) -> Address | None:
    """``host:port`` (``[::1]:8765`` for IPv6); empty: no HTTP service."""
    text = text.strip()
    if not text:
        return None
    match = re.fullmatch(
        r"\[(?P<v6>[0-9A-Fa-f:.]+)\]:(?P<port>\d+)|(?P<host>[^:\s]+):(?P<p>\d+)", text
    )
    if match is None:
        raise ConfigError(f"{name}={text}: write host:port, like 127.0.0.1:8765 (empty: no HTTP)")
    host = match["v6"] or match["host"]
    port = int(match["port"] or match["p"])
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}={text}: the port is 0 to 65535")
    return Address(host, port)


def _urls(_name: str, text: str, _home: Path) -> tuple[str, ...]:
    """One or more URLs, separated by spaces or commas."""
    return tuple(part for part in re.split(r"[\s,]+", text) if part)


OPTIONS: Table = (
    Option("http", "SORA_HTTP", "127.0.0.1:8765", _address,
           "address of the API and dashboard (empty: none)", "--http"),
    Option("api_token", "SORA_API_TOKEN", "", text_or_none,
           "token the API and dashboard ask for (required off loopback)"),
    Option("webhook_url", "SORA_WEBHOOK_URL", "", text_or_none,
           "URL told of each job's end, besides the job's own callback_url"),
    Option("webhook_secret", "SORA_WEBHOOK_SECRET", "", text_or_none,
           "secret the webhooks are signed with (whsec_...)"),
    Option("webhook_retry", "SORA_WEBHOOK_RETRY", "5", seconds(0.01),
           "seconds before a failed delivery's first retry, then longer"),
    Option("webhook_max_age", "SORA_WEBHOOK_MAX_AGE", "86400", seconds(1),
           "seconds a delivery is retried before it is kept as failed"),
    Option("notify", "SORA_NOTIFY", "", _urls,
           "Apprise URL(s) told when the queue pauses and resumes"),
    Option("thumbnails", "SORA_THUMBNAILS_DIR", ".thumbnails", under_home,
           "the dashboard's thumbnails, made once"),
)  # fmt: skip


@dataclass(frozen=True)
class ServiceSettings:
    http: Address | None  # None: no HTTP service
    api_token: str | None = field(repr=False)  # a secret: never logged
    webhook_url: str | None = field(repr=False)  # its query may hold a token
    webhook_secret: str | None = field(repr=False)  # a secret: never logged
    webhook_retry: float  # the first retry's delay; each next one is longer
    webhook_max_age: float  # a delivery still failing after this long is kept as failed
    notify: tuple[str, ...] = field(repr=False)  # Apprise URLs: may hold passwords
    thumbnails: Path


check_fields(OPTIONS, ServiceSettings)


def read_settings(flags: Flags, environ: Mapping[str, str], home: Path) -> ServiceSettings:
    service = ServiceSettings(**resolve(OPTIONS, flags, environ, home))
    token = service.api_token
    if token is not None and not (len(token) >= 16 and token.isascii() and token.isprintable()):
        raise ConfigError(
            "SORA_API_TOKEN: use at least 16 printable ASCII characters, e.g. the output of "
            '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'
        )
    if service.http is not None and not service.http.loopback and not service.api_token:
        raise ConfigError(
            f"SORA_HTTP={service.http} is reachable from other machines: set SORA_API_TOKEN "
            "(a long random text) so that only those who have it can use the API, or listen "
            "on 127.0.0.1"
        )
    return service


def from_settings(settings: Settings, environ: Mapping[str, str]) -> ServiceSettings:
    return read_settings(settings.flags, environ, settings.home)

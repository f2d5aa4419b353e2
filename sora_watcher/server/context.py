"""What every route is given: the settings, the folders and the rules of the inbox."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sora_watcher.config import Settings, worker_folders
from sora_watcher.folders import Folders
from sora_watcher.inputs import Rules
from sora_watcher.records import Records
from sora_watcher.service_settings import ServiceSettings


@dataclass(frozen=True)
class Context:
    settings: Settings
    service: ServiceSettings
    rules: Rules  # the daemon's own: a submission is checked as an inbox file is
    # Signs the dashboard's anti-forgery tokens; new at each start (a page from before a
    # restart asks to be reloaded, nothing worse).
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    @property
    def folders(self) -> Folders:
        return worker_folders(self.settings)

    @cached_property
    def records(self) -> Records:
        """One for the service's life: it keeps the records it has read (see Records)."""
        return Records(self.settings.records)

    @property
    def images(self) -> Path:
        return self.settings.images

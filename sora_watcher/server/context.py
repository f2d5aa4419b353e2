"""What every route is given: the settings, the folders and the rules of the inbox."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sora_watcher.config import Settings
from sora_watcher.folders import Folders
from sora_watcher.inputs import Rules
from sora_watcher.records import Records
from sora_watcher.server.settings import ServiceSettings


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
        s = self.settings
        return Folders.for_worker(
            s.inbox, s.processing, s.processed, s.failed, s.images, s.worker_id
        )

    @property
    def records(self) -> Records:
        return Records(self.settings.records)

    @property
    def images(self) -> Path:
        return self.settings.images

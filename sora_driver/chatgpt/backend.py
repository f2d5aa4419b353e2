"""The ChatGPT web backend as the daemon sees it: ``SORA_BACKEND=chatgpt-web``.

Opt-in and gentle: one generation at a time, ``SORA_MIN_INTERVAL`` between two sends, the
queue stopped at the plan's first limit message until the reset it states. Its settings are
its own section (``sora_driver.chatgpt.settings``) plus the web section's shared options.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping

from sora_driver.chatgpt.driver import ChatGptDriver
from sora_driver.chatgpt.settings import from_settings
from sora_driver.guarded import GuardedBackend
from sora_driver.login import login as login_by_hand
from sora_driver.session import site_of, status_lines
from sora_watcher.backends.base import Capabilities
from sora_watcher.config import Settings

CAPABILITIES = Capabilities(
    # what the site makes (1024x1024, 1536x1024, 1024x1536), asked for in words
    aspect_ratios=("1:1", "3:2", "2:3"),
    variants=(1, 2),  # "2 images", in words
    default_in_flight=1,
    max_in_flight=1,  # one at a time, by design
    follows_tasks=True,  # a conversation outlives the browser and the daemon
)


def capabilities(settings: Settings, environ: Mapping[str, str]) -> Capabilities:
    """What the site takes; reading the section here reports a wrong value at start-up."""
    chat = from_settings(settings, environ)
    # a send waits its turn, then a page and its elements; a download its calls
    busy = chat.min_interval + 3 * chat.page_timeout
    return dataclasses.replace(CAPABILITIES, busy_seconds=busy)


def create(
    settings: Settings, environ: Callable[[], Mapping[str, str]], stop: threading.Event
) -> GuardedBackend:
    chat = from_settings(settings, os.environ)  # fixed at start, like the core's settings
    driver = ChatGptDriver(chat, settings.timeout, stop, settings.debug)
    return GuardedBackend(driver, chat.session_file, "ChatGPT").opened()


def login(settings: Settings) -> int:
    chat = from_settings(settings, os.environ)  # the command line loaded .env into it
    return login_by_hand(chat.url, chat.session_file, chat.browser_path, site="ChatGPT")


def status(settings: Settings, environ: Mapping[str, str], offline: bool) -> tuple[list[str], bool]:
    """The saved session: there, private, and (unless ``offline``) accepted by the site."""
    chat = from_settings(settings, environ)
    site = site_of(chat.url)
    lines, ok = status_lines(chat.session_file, chat.url, site, chat.page_timeout, offline)
    head = f"backend: chatgpt-web, {chat.url}, {chat.min_interval:g}s between two sends"
    return [head, *lines], ok

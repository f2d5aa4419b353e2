"""Every common setting, declared once in ``OPTIONS`` and resolved in one place: command-line
flag > environment > ``.env`` > default. Each backend declares its own section beside it
(``sora_watcher.backends``); ``all_options()`` lists them all.

Load ``.env`` into the environment before ``resolve`` (python-dotenv does not override what is
set).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sora_watcher import backends, options
from sora_watcher.backends import Backend
from sora_watcher.folders import Folders
from sora_watcher.options import (
    ConfigError,
    Flags,
    Option,
    Table,
    absolute_path,
    check_fields,
    choice,
    count,
    flag_word,
    number,
    one_of,
    seconds,
    under_home,
    under_home_or_none,
    verbatim,
)

__all__ = [
    "MAX_CONCURRENCY",
    "OPTIONS",
    "ConfigError",
    "Settings",
    "all_options",
    "choice",
    "concurrency_for",
    "number",
    "resolve",
    "worker_folders",
]

MAX_CONCURRENCY = 16  # what any backend allows at most; each says its own limit


def _concurrency(name: str, text: str, _home: Path) -> int | None:
    if not text:
        return None
    value = int(number(name, text, int, 1))
    if value > MAX_CONCURRENCY:
        raise ConfigError(f"{name}={text}: at most {MAX_CONCURRENCY} generations in flight")
    return value


def _worker_id(_name: str, text: str, _home: Path) -> str:
    """A folder name for this worker: the host name unless set, reduced to safe characters."""
    worker = re.sub(r"[^A-Za-z0-9._-]", "_", text or socket.gethostname()).strip("._")
    return worker or "worker"


# Folders are relative to SORA_HOME. Positional fields: key, variable, default, converter,
# help, flag.
HOME = Option(
    "home", "SORA_HOME", ".", absolute_path, "folder the other folders are relative to", "--home"
)
OPTIONS: Table = (
    HOME,
    Option("inbox", "SORA_INBOX_DIR", "inbox", under_home,
           "folder watched for prompt files", "--inbox"),
    Option("processing", "SORA_PROCESSING_DIR", "processing", under_home,
           "folder of the inputs being worked on"),
    Option("processed", "SORA_PROCESSED_DIR", "processed", under_home,
           "folder of the inputs done", "--processed"),
    Option("failed", "SORA_FAILED_DIR", "failed", under_home,
           "folder of the inputs that failed", "--failed"),
    Option("images", "SORA_IMAGES_DIR", "images", under_home,
           "folder for the images", "--images"),
    Option("logs", "SORA_LOGS_DIR", "logs", under_home, "folder of the log files", "--logs"),
    Option("records", "SORA_RECORDS_DIR", "records", under_home,
           "folder of the job records (what the API answers about each job)"),
    Option("outbox", "SORA_OUTBOX_DIR", "outbox", under_home,
           "folder of the webhook deliveries not yet made"),
    Option("records_days", "SORA_RECORDS_DAYS", "30", count(0),
           "days a finished job's record is kept (0: for ever)"),
    Option("timeout", "SORA_TIMEOUT", "60", seconds(1),
           "seconds one generation may take", "--timeout"),
    Option("max_retries", "SORA_MAX_RETRIES", "3", count(0),
           "tries after a transient error", "--max-retries"),
    Option("retry_delay", "SORA_RETRY_DELAY", "10", seconds(0),
           "seconds before the first retry, doubled at each"),
    Option("pause_seconds", "SORA_PAUSE_SECONDS", "300", seconds(0),
           "a paused queue's wait when the service does not say how long"),
    Option("debug", "SORA_DEBUG", "false", flag_word,
           "log each step, screenshots", "--debug", const="true"),
    Option("worker_id", "SORA_WORKER_ID", "", _worker_id,
           "this daemon's name among the workers (default: the host name)"),
    Option("polling", "SORA_POLLING", "false", flag_word,
           "watch the inbox by polling instead of inotify"),
    Option("rescan_seconds", "SORA_RESCAN_SECONDS", "30", seconds(0.1),
           "seconds between two full rescans of the inbox"),
    Option("settle_seconds", "SORA_SETTLE_SECONDS", "2", seconds(0),
           "seconds a polled file's size and mtime must stay put"),
    Option("max_input_bytes", "SORA_MAX_INPUT_BYTES", str(1024 * 1024), count(1),
           "the largest input file read"),
    Option("max_prompt_chars", "SORA_MAX_PROMPT_CHARS", "4000", count(1),
           "the longest prompt sent"),
    Option("backend", "SORA_BACKEND", Backend.OPENAI.value, one_of(Backend),
           "openai (default), web or instant", "--backend"),
    Option("env_file", "SORA_ENV_FILE", ".env", absolute_path,
           "dotenv file to load", "--env-file"),
    Option("daily_limit", "SORA_DAILY_LIMIT", "0", count(0),
           "images per local day (0: no limit)"),
    # Read and checked by the chart plug-in (sora_watcher.inputs.chart.load_template).
    Option("prompt_template", "SORA_PROMPT_TEMPLATE", "", under_home_or_none,
           "your own wording for prompts built from charts"),
    Option("on_success", "SORA_ON_SUCCESS", "", verbatim, "command run after each image"),
    Option("on_failure", "SORA_ON_FAILURE", "", verbatim, "command run after each failure"),
    Option("hook_timeout", "SORA_HOOK_TIMEOUT", "60", seconds(0.1),
           "seconds a hook command may take"),
    Option("concurrency", "SORA_CONCURRENCY", "", _concurrency,
           "generations in flight at once (default: the backend's)"),
    Option("log_rotation", "SORA_LOG_ROTATION", "50 MB", verbatim,
           "rotate the log file at a size or a time"),
    Option("log_retention", "SORA_LOG_RETENTION", "30 days", verbatim,
           "remove the log files older than this, or keep this many"),
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    home: Path
    inbox: Path
    processing: Path
    processed: Path
    failed: Path
    images: Path
    logs: Path
    records: Path
    outbox: Path
    records_days: int  # a finished job's record is removed after this many days; 0: never
    timeout: float
    max_retries: int
    retry_delay: float
    pause_seconds: float  # a paused queue's wait when the site does not say how long
    debug: bool
    worker_id: str
    polling: bool
    rescan_seconds: float
    settle_seconds: float
    max_input_bytes: int
    max_prompt_chars: int
    backend: Backend
    env_file: Path  # the dotenv file: read at start-up, watched while a key is missing
    daily_limit: int  # images per local day; 0: no limit
    prompt_template: Path | None  # the chart plug-in reads and checks it
    on_success: str
    on_failure: str
    hook_timeout: float
    concurrency: int | None  # generations in flight at once; None: the backend's default
    log_rotation: str  # loguru's words: "50 MB", "00:00", "1 week"
    log_retention: str  # "30 days", "1 week", or a number of files
    # The command line as given (None: not given), for the backends' sections that have flags.
    flags: Mapping[str, object | None] = field(default_factory=dict, repr=False, compare=False)


check_fields(OPTIONS, Settings, besides=("flags",))


def resolve(flags: Flags, environ: Mapping[str, str] = os.environ) -> Settings:
    """Settings from flags (``None`` = not given), then ``environ``, then the defaults."""
    home = HOME.read(flags, environ, Path())
    values = options.resolve(OPTIONS, flags, environ, home)
    return Settings(**values, flags=dict(flags))


def all_options() -> Table:
    """The common options and every backend's own: what ``.env.example`` documents."""
    return OPTIONS + tuple(option for table in sections().values() for option in table)


def sections() -> dict[str, Table]:
    """The sections besides the common one: the service's, then each backend's."""
    from sora_watcher import service_settings as service  # light: no web library

    return {"service": service.OPTIONS, **{str(k): v for k, v in backends.sections().items()}}


def worker_folders(settings: Settings) -> Folders:
    """The folders of this daemon's worker (``SORA_WORKER_ID``)."""
    s = settings
    return Folders.for_worker(s.inbox, s.processing, s.processed, s.failed, s.images, s.worker_id)


def concurrency_for(settings: Settings, most: int, default: int) -> int:
    """SORA_CONCURRENCY checked against what the backend allows (``most``)."""
    if settings.concurrency is None:
        return default
    if settings.concurrency > most:
        raise ConfigError(
            f"SORA_CONCURRENCY={settings.concurrency}: the {settings.backend} backend runs "
            f"at most {most} generations at once"
        )
    return settings.concurrency

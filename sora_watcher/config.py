"""Every setting, resolved in one place: command-line flag > environment > ``.env`` > default."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sora_watcher.astro import ChartError, check_template
from sora_watcher.backends import BACKENDS

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}

# setting -> (environment variable, default). Folders are relative to SORA_HOME.
OPTIONS: dict[str, tuple[str, str]] = {
    "home": ("SORA_HOME", "."),
    "inbox": ("SORA_INBOX_DIR", "inbox"),
    "processing": ("SORA_PROCESSING_DIR", "processing"),
    "processed": ("SORA_PROCESSED_DIR", "processed"),
    "failed": ("SORA_FAILED_DIR", "failed"),
    "images": ("SORA_IMAGES_DIR", "images"),
    "logs": ("SORA_LOGS_DIR", "logs"),
    "debug_dir": ("SORA_DEBUG_DIR", "debug_screenshots"),
    "session_file": ("SORA_SESSION_FILE", "session.json"),
    "base_url": ("SORA_BASE_URL", "https://sora.com"),
    "timeout": ("SORA_TIMEOUT", "60"),
    "page_timeout": ("SORA_PAGE_TIMEOUT", "30"),
    "max_retries": ("SORA_MAX_RETRIES", "3"),
    "retry_delay": ("SORA_RETRY_DELAY", "10"),
    "pause_seconds": ("SORA_PAUSE_SECONDS", "300"),
    "headless": ("SORA_HEADLESS", "true"),
    "browser_path": ("SORA_BROWSER_PATH", ""),
    "selectors": ("SORA_SELECTORS", ""),
    "debug": ("SORA_DEBUG", "false"),
    "worker_id": ("SORA_WORKER_ID", ""),  # default: this machine's host name
    "polling": ("SORA_POLLING", "false"),
    "rescan_seconds": ("SORA_RESCAN_SECONDS", "30"),
    "settle_seconds": ("SORA_SETTLE_SECONDS", "2"),
    "max_input_bytes": ("SORA_MAX_INPUT_BYTES", str(1024 * 1024)),
    "max_prompt_chars": ("SORA_MAX_PROMPT_CHARS", "4000"),
    "backend": ("SORA_BACKEND", "openai"),
    "env_file": ("SORA_ENV_FILE", ".env"),
    "daily_limit": ("SORA_DAILY_LIMIT", "0"),
    "prompt_template": ("SORA_PROMPT_TEMPLATE", ""),
    "on_success": ("SORA_ON_SUCCESS", ""),
    "on_failure": ("SORA_ON_FAILURE", ""),
    "hook_timeout": ("SORA_HOOK_TIMEOUT", "60"),
    "concurrency": ("SORA_CONCURRENCY", ""),  # default: the backend's
    "recycle_after": ("SORA_RECYCLE_AFTER", "50"),
    "log_rotation": ("SORA_LOG_ROTATION", "50 MB"),
    "log_retention": ("SORA_LOG_RETENTION", "30 days"),
}
MAX_CONCURRENCY = 16  # what any backend allows at most; each says its own limit


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    home: Path
    inbox: Path
    processing: Path
    processed: Path
    failed: Path
    images: Path
    logs: Path
    debug_dir: Path
    session_file: Path
    base_url: str
    timeout: float
    page_timeout: float  # a page load, an element, a download
    max_retries: int
    retry_delay: float
    pause_seconds: float  # a paused queue's wait when the site does not say how long
    headless: bool
    browser_path: str | None
    selectors: Path | None
    debug: bool
    worker_id: str
    polling: bool
    rescan_seconds: float
    settle_seconds: float
    max_input_bytes: int
    max_prompt_chars: int
    backend: str  # a name of sora_watcher.backends.BACKENDS
    env_file: Path  # the dotenv file: read at start-up, watched while a key is missing
    daily_limit: int  # images per local day; 0: no limit
    prompt_template: str | None  # the template's text, checked
    on_success: str
    on_failure: str
    hook_timeout: float
    concurrency: int | None  # generations in flight at once; None: the backend's default
    recycle_after: int  # jobs per browser, restarted after that many; 0: never
    log_rotation: str  # loguru's words: "50 MB", "00:00", "1 week"
    log_retention: str  # "30 days", "1 week", or a number of files


def _boolean(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}={text!r}: expected true or false")


def number(name: str, text: str, kind: type[float] | type[int], minimum: float) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected a {kind.__name__}") from None
    if value < minimum:
        raise ConfigError(f"{name}={text!r}: must be at least {minimum:g}")
    return value


def resolve(
    flags: Mapping[str, object | None], environ: Mapping[str, str] = os.environ
) -> Settings:
    """Settings from flags (``None`` = not given), then ``environ``, then the defaults.

    Load ``.env`` into the environment first (python-dotenv does not override what is set).
    """
    raw: dict[str, str] = {}
    for key, (env_name, default) in OPTIONS.items():
        flag = flags.get(key)
        raw[key] = str(flag) if flag is not None else environ.get(env_name, default)

    def name(key: str) -> str:
        return OPTIONS[key][0]

    home = Path(raw["home"]).expanduser().resolve()

    def under_home(key: str) -> Path:
        return home / Path(raw[key]).expanduser()

    return Settings(
        home=home,
        inbox=under_home("inbox"),
        processing=under_home("processing"),
        processed=under_home("processed"),
        failed=under_home("failed"),
        images=under_home("images"),
        logs=under_home("logs"),
        debug_dir=under_home("debug_dir"),
        session_file=under_home("session_file"),
        base_url=raw["base_url"].rstrip("/"),
        timeout=number(name("timeout"), raw["timeout"], float, 1),
        page_timeout=number(name("page_timeout"), raw["page_timeout"], float, 1),
        max_retries=int(number(name("max_retries"), raw["max_retries"], int, 0)),
        retry_delay=number(name("retry_delay"), raw["retry_delay"], float, 0),
        pause_seconds=number(name("pause_seconds"), raw["pause_seconds"], float, 0),
        headless=_headless(flags, environ, raw),
        browser_path=raw["browser_path"] or None,
        selectors=under_home("selectors") if raw["selectors"] else None,
        debug=_boolean(name("debug"), raw["debug"]),
        worker_id=_worker_id(raw["worker_id"]),
        polling=_boolean(name("polling"), raw["polling"]),
        rescan_seconds=number(name("rescan_seconds"), raw["rescan_seconds"], float, 0.1),
        settle_seconds=number(name("settle_seconds"), raw["settle_seconds"], float, 0),
        max_input_bytes=int(number(name("max_input_bytes"), raw["max_input_bytes"], int, 1)),
        max_prompt_chars=int(number(name("max_prompt_chars"), raw["max_prompt_chars"], int, 1)),
        backend=choice(name("backend"), raw["backend"], tuple(BACKENDS)),
        env_file=Path(raw["env_file"]).expanduser().resolve(),
        daily_limit=int(number(name("daily_limit"), raw["daily_limit"], int, 0)),
        prompt_template=_template(name("prompt_template"), raw["prompt_template"], home),
        on_success=raw["on_success"],
        on_failure=raw["on_failure"],
        hook_timeout=number(name("hook_timeout"), raw["hook_timeout"], float, 0.1),
        concurrency=_concurrency(name("concurrency"), raw["concurrency"]),
        recycle_after=int(number(name("recycle_after"), raw["recycle_after"], int, 0)),
        log_rotation=raw["log_rotation"],
        log_retention=raw["log_retention"],
    )


def _template(name: str, text: str, home: Path) -> str | None:
    """The chart prompt template's text, read and checked now rather than at the first chart."""
    if not text:
        return None
    path = home / Path(text).expanduser()
    try:
        template = path.read_text(encoding="utf-8")
        check_template(template)
    except (OSError, UnicodeDecodeError, ChartError) as exc:
        raise ConfigError(f"{name}={text}: {exc}") from None
    return template


def _headless(
    flags: Mapping[str, object | None], environ: Mapping[str, str], raw: Mapping[str, str]
) -> bool:
    """Headless unless said otherwise; --debug shows the browser when there is a screen."""
    explicit = flags.get("headless") is not None or "SORA_HEADLESS" in environ
    if not explicit and _boolean("SORA_DEBUG", raw["debug"]):
        return not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
    return _boolean("SORA_HEADLESS", raw["headless"])


def _concurrency(name: str, text: str) -> int | None:
    if not text:
        return None
    value = int(number(name, text, int, 1))
    if value > MAX_CONCURRENCY:
        raise ConfigError(f"{name}={text}: at most {MAX_CONCURRENCY} generations in flight")
    return value


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


def choice(name: str, text: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise ConfigError(f"{name}={text!r}: expected one of {', '.join(allowed)}")
    return text


def _worker_id(text: str) -> str:
    """A folder name for this worker: the host name unless set, reduced to safe characters."""
    worker = re.sub(r"[^A-Za-z0-9._-]", "_", text or socket.gethostname()).strip("._")
    return worker or "worker"

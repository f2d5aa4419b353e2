"""Logging: stdout (the journal under systemd) plus one file per run in ``logs/``.

Generation lines keep the wording the users fixed, in French, and no level column:
``[2025-04-15 18:42:01] Prompt utilisé : "..." Statut : SUCCÈS Fichier : ... Durée : 23.4s``.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

TIME = "[{time:YYYY-MM-DD HH:mm:ss}]"

# Second line of defence: the code never logs cookies or tokens on purpose, but a library's
# error message might quote them (Playwright's call logs do).
SECRETS = [
    (re.compile(r"(?im)^(\s*-?\s*(?:cookie|set-cookie|authorization)\s*:).*$"), r"\1 [redacted]"),
    (re.compile(r"(?i)\bBearer\s+[\w.~+/=-]+"), "Bearer [redacted]"),
    (
        re.compile(r"(?i)((?:session-token|cf_clearance|__cf_bm|_cfuvid|oai-did)=)[^;\s]+"),
        r"\1[redacted]",
    ),
    (re.compile(r"([?&]sig=)[^&\s]+"), r"\1[redacted]"),
    (re.compile(r"\bsk-[A-Za-z0-9_*.-]{4,}"), "sk-[redacted]"),  # an API key, masked or not
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), "whsec_[redacted]"),  # a webhook secret
]


def redact(text: str) -> str:
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


CONTROL = {code: f"\\x{code:02x}" for code in [*range(32), 127]} | {10: "\\n", 13: "\\r", 9: "\\t"}


def one_line(text: str) -> str:
    """Control characters escaped (a file may be named "a\\nb.txt"), broken encodings shown."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(CONTROL)


def _redact_record(record: Record) -> None:
    record["message"] = one_line(redact(record["message"]))


def _format(record: Record) -> str:
    if record["extra"].get("generation"):
        return TIME + " {message}\n"
    return TIME + " {level: <7} {message}\n{exception}"


def setup(logs_dir: Path, debug: bool, rotation: str = "50 MB", retention: str = "30 days") -> Path:
    """Send logs to stdout and to a new file named after the start time; return its path.

    The file rotates (``rotation``: a size, a time of day or a period) and files of any run
    older than ``retention`` are removed: loguru's retention matches every file of the name
    pattern, across runs.
    """
    logs_dir.mkdir(parents=True, exist_ok=True)
    level = "DEBUG" if debug else "INFO"
    logger.remove()
    logger.configure(patcher=_redact_record)
    # diagnose=False: loguru would otherwise print local variables (cookies among them)
    # in tracebacks.
    logger.add(sys.stdout, level=level, format=_format, colorize=False, diagnose=False)
    started = time.time()
    logger.add(
        logs_dir / "sora-watcher_{time:YYYYMMDD_HHmmss_SSSSSS}.log",
        level=level,
        format=_format,
        encoding="utf-8",
        diagnose=False,
        rotation=rotation,
        retention=int(retention) if retention.isdigit() else retention,  # a number of files
    )
    runs = [p for p in logs_dir.glob("sora-watcher_*.log") if p.stat().st_mtime >= started - 1]
    return max(runs, key=lambda p: p.name)


def success(prompt: str, image: str, seconds: float) -> None:
    logger.bind(generation=True).info(
        'Prompt utilisé : "{}" Statut : SUCCÈS Fichier : {} Durée : {:.1f}s', prompt, image, seconds
    )


def failure(prompt: str, error_class: str, detail: str) -> None:
    logger.bind(generation=True).error(
        'Prompt utilisé : "{}" Statut : ÉCHEC Erreur : {} ({})', prompt, error_class, detail
    )


def credentials_missing(message: str) -> None:
    """The users' own words, logged and printed as they are."""
    logger.error(message)
    print(message, file=sys.stderr, flush=True)


def relative(path: Path, home: Path) -> str:
    """``path`` from SORA_HOME, for a shorter log line; whole if it lies elsewhere."""
    try:
        return str(path.relative_to(home))
    except ValueError:
        return str(path)

"""``sora-watcher status``: what the daemon is doing, in a form a person or a health check reads.

Exit status 0 when all is well; 1 when a queue is paused, or the backend's credentials (a
session, an API key) are missing or refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sora_watcher import backends
from sora_watcher.config import Settings
from sora_watcher.folders import LOCK_FILE, count_inputs, lock_is_held
from sora_watcher.outbox import counts
from sora_watcher.quota import todays_images, tokens
from sora_watcher.service import STATUS_FILE, Board


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def queue_depth(settings: Settings) -> dict[str, int]:
    """Inputs in each state folder (processing: every worker's), for ``status``, the
    dashboard and /metrics."""
    workers = [p for p in settings.processing.glob("*") if p.is_dir()]
    return {
        "inbox": count_inputs(settings.inbox),
        "processing": sum(count_inputs(w) for w in workers),
        "processed": count_inputs(settings.processed),
        "failed": count_inputs(settings.failed),
    }


def report(settings: Settings, environ: Mapping[str, str], offline: bool) -> tuple[list[str], bool]:
    """The lines to print, and whether everything is fine."""
    healthy = True
    lines = ["folders:"]
    workers = sorted(p for p in settings.processing.glob("*") if p.is_dir())
    depth = queue_depth(settings)
    for name in ("inbox", "processed", "failed", "processing"):
        lines.append(f"  {name:<11} {depth[name]}")
    images = sum(1 for _ in settings.images.rglob("*.png")) if settings.images.is_dir() else 0
    lines.append(f"  {'images':<11} {images}")

    boards = [(w.name, Board.load(w / STATUS_FILE), lock_is_held(w / LOCK_FILE)) for w in workers]
    running = [(name, board) for name, board, held in boards if held and board is not None]
    if not running:
        lines.append("daemon: not running")
    for name, board in running:
        since = f"since {when(board.since)}"
        detail = f" ({board.detail})" if board.detail else ""
        lines.append(f"daemon {name} (pid {board.pid}): {board.state}{detail}, {since}")
        if board.state == "paused":
            healthy = False
    known = [board for _, board, _ in boards if board is not None]
    lines += last_outcome("last success", [b.last_success for b in known], "image")
    lines += last_outcome("last failure", [b.last_failure for b in known], "error")

    today = list(todays_images(settings.images))
    limit = f" of {settings.daily_limit} (SORA_DAILY_LIMIT)" if settings.daily_limit else ""
    billed = tokens(today)
    lines.append(f"today: {len(today)} image(s){limit}" + (f", {billed} tokens" if billed else ""))
    lines.append(webhooks_line(settings.outbox))
    backend_lines, backend_ok = backends.load(settings.backend).status(settings, environ, offline)
    lines += backend_lines
    healthy = healthy and backend_ok
    return lines, healthy


def webhooks_line(outbox: Path) -> str:
    waiting = counts(outbox) if outbox.is_dir() else {"pending": 0, "failed": 0}
    line = f"webhooks: {waiting['pending']} pending, {waiting['failed']} failed"
    if waiting["failed"]:
        line += f" (given up on, kept in {outbox / 'failed'})"
    return line


def last_outcome(title: str, outcomes: list[dict[str, Any] | None], key: str) -> list[str]:
    known = [o for o in outcomes if o]
    if not known:
        return [f"{title}: none yet"]
    newest = max(known, key=lambda o: float(o["time"]))
    return [f'{title}: {when(newest["time"])} "{newest["prompt"]}" -> {newest[key]}']


def status(settings: Settings, environ: Mapping[str, str], offline: bool) -> int:
    lines, healthy = report(settings, environ, offline)
    print("\n".join(lines))
    return 0 if healthy else 1

"""``/healthz`` (the process answers), ``/readyz`` (the queue takes work), ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from sora_watcher import outbox
from sora_watcher.folders import LOCK_FILE, lock_is_held
from sora_watcher.server import prometheus
from sora_watcher.server.deps import Ctx, protected
from sora_watcher.service import STATUS_FILE, Board

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, bool]:
    return {"ok": True}


def readiness(ctx: Ctx) -> tuple[bool, dict[str, Any]]:
    """Ready: this worker's daemon holds its lock and is neither starting nor paused."""
    folder = ctx.folders.processing
    board = Board.load(folder / STATUS_FILE)
    if board is None or not lock_is_held(folder / LOCK_FILE):
        return False, {"ready": False, "state": "stopped", "reason": "the daemon is not running"}
    ready = board.state in ("idle", "generating")
    return ready, {"ready": ready, "state": board.state, "reason": board.detail or None}


@router.get("/readyz", responses={503: {"description": "paused, starting or stopped"}})
def readyz(ctx: Ctx) -> JSONResponse:
    ready, body = readiness(ctx)
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", dependencies=[Depends(protected)], response_class=Response)
def metrics(ctx: Ctx) -> Response:
    data, content_type = prometheus.render(ctx.settings, outbox.counts(ctx.settings.outbox))
    return Response(data, media_type=content_type)

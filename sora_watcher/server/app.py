"""The FastAPI application: the routes, the body limit, and errors that are always a clear
4xx with ``{"detail": ..., "field": ...}`` (a 500 is a bug of ours, and says only that)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sora_watcher.server import dashboard, files_routes, health_routes, jobs_routes
from sora_watcher.server.context import Context


def create_app(context: Context) -> FastAPI:
    app = FastAPI(
        title="sora-watcher",
        summary="Prompts in, images out: the API beside the inbox.",
        version="1",
    )
    app.state.context = context
    app.include_router(health_routes.router)
    app.include_router(jobs_routes.router)
    app.include_router(files_routes.router)
    app.include_router(dashboard.router)
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)
    app.add_middleware(BodyLimit, limit=context.settings.max_input_bytes)
    return app


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    detail: Any = exc.detail
    body = detail if isinstance(detail, dict) else {"detail": str(detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Pydantic's findings, led by the first one in words a person reads."""
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(where) or None
    detail = f"{field}: {first['msg']}" if field else str(first["msg"])
    shown = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors
    ]
    return JSONResponse({"detail": detail, "field": field, "errors": shown}, status_code=422)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.opt(exception=exc).error(
        "HTTP {} {}: unexpected error", request.method, request.url.path
    )
    return JSONResponse({"detail": "internal error: see the daemon's log"}, status_code=500)


class BodyLimit:
    """A request body over ``limit`` bytes is refused with 413 before it is read whole (by
    its Content-Length, or while it streams in when it has none)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self.refuse(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise TooLarge(self.limit)  # an HTTPException: FastAPI answers it as it is
            return message

        try:
            await self.app(scope, counted, send)
        except TooLarge:
            await self.refuse(send)

    async def refuse(self, send: Send) -> None:
        response = JSONResponse(TooLarge(self.limit).detail, status_code=413)
        await response({"type": "http"}, receive_nothing, send)


class TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        detail = f"the body is over {limit} bytes (SORA_MAX_INPUT_BYTES): split the job"
        super().__init__(413, {"detail": detail, "field": None})


async def receive_nothing() -> Message:
    return {"type": "http.disconnect"}

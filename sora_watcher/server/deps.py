"""The dependencies the routes declare: the context, and the guard of protected routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sora_watcher.server.auth import guard
from sora_watcher.server.context import Context

# Both are async, though they never wait: FastAPI runs a plain function dependency on its
# thread pool, and two thread hops per request cost more than the work they do.


async def context(request: Request) -> Context:
    found: Context = request.app.state.context
    return found


Ctx = Annotated[Context, Depends(context)]


async def protected(request: Request, ctx: Ctx) -> None:
    guard(request, ctx)

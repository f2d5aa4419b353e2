"""``/v1/images/{path}``: a file under ``images/`` and nothing else; and a user's latest chart
image, for the astrology app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel

from sora_watcher.images import inside
from sora_watcher.inputs.common import SAFE_NAME
from sora_watcher.job_view import describe_image
from sora_watcher.server.deps import Ctx, protected
from sora_watcher.server.jobs_routes import Problem

router = APIRouter(prefix="/v1", tags=["images"], dependencies=[Depends(protected)])

SERVED = {".png": "image/png", ".json": "application/json"}  # images and their sidecars
User = Annotated[str, PathParam(pattern=f"^{SAFE_NAME.pattern}$")]


@router.get(
    "/images/{path:path}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "no such image"}},
)
def image(path: str, ctx: Ctx) -> FileResponse:
    found = inside(ctx.images, path)
    if found is None or found.suffix.lower() not in SERVED:
        raise HTTPException(404, "no such image under images/")
    return FileResponse(found, media_type=SERVED[found.suffix.lower()])


class Latest(BaseModel):
    user: str
    prompt: str
    image: dict[str, Any]


@router.get(
    "/users/{user}/latest",
    response_model=Latest,
    responses={404: {"model": Problem}, 422: {"model": Problem}},
)
def latest(user: User, ctx: Ctx) -> dict[str, Any]:
    """The newest chart image of ``user`` and its prompt (what ``result_<user>.json`` says)."""
    result = inside(ctx.images, f"{user}/result_{user}.json")
    data: Any = None
    try:
        data = json.loads(result.read_text("utf-8")) if result else None
        image = Path(data["image"]) if isinstance(data, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        image = None
    if not isinstance(data, dict) or image is None or not image.is_file():
        raise HTTPException(404, f"no image for {user} yet")
    path = f"{user}/{image.name}"
    return {
        "user": user,
        "prompt": str(data.get("prompt", "")),
        "image": describe_image(path, ctx.images),
    }

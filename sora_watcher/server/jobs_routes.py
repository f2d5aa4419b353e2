"""``/v1/jobs``: submit a job, follow it, list them, send a failed one back."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from sora_watcher.backends.base import MAX_SEED, MAX_STEPS
from sora_watcher.job_view import describe
from sora_watcher.records import ID, JobStatus, Record
from sora_watcher.server.deps import Ctx, protected
from sora_watcher.submit import SubmitError, retry, submit

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(protected)])

# Submissions write and fsync three files: a few threads keep the disk busy, and a queue that
# serves them in turn keeps a burst's slowest answers near its median (measured: bench api).
WRITERS = CapacityLimiter(4)
JobId = Annotated[str, Path(pattern=f"^{ID.pattern}$", description="a job's id")]


class JobIn(BaseModel):
    """A JSON job as in ``inbox/`` (``prompt`` or ``prompts``, options), or a natal chart
    (``chart`` and ``user``); ``callback_url`` is told of the job's end."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    prompts: list[str] | None = None
    aspect_ratio: str | None = None
    variants: int | None = None
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    model: str | None = None
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="the same seed, the same pixels (diffusers)"
    )
    negative_prompt: str | None = Field(None, description="what to keep out (diffusers)")
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="denoising steps (diffusers)")
    name: str | None = Field(None, description="a sub-folder of images/ for its images")
    chart: dict[str, Any] | None = Field(None, description="an AstroSource or kerykeion chart")
    user: str | None = Field(None, description="the chart's user: images/<user>/")
    callback_url: AnyHttpUrl | None = None


class Accepted(BaseModel):
    id: str
    status_url: str
    state: str


class Problem(BaseModel):
    detail: str
    field: str | None = None


class Image(BaseModel):
    path: str
    url: str
    sidecar: dict[str, Any] | None


class PromptOut(BaseModel):
    line: int
    text: str
    state: str
    images: list[Image]
    error: dict[str, Any] | None


class JobOut(BaseModel):
    id: str
    state: JobStatus
    name: str
    source: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    runs: int
    status_url: str
    prompts: list[PromptOut]
    error: dict[str, Any] | None


class JobList(BaseModel):
    jobs: list[JobOut]


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    409: {"model": Problem},
    413: {"model": Problem},
    422: {"model": Problem},
}


@router.post(
    "",
    status_code=202,
    response_model=Accepted,
    responses=ERRORS | {200: {"model": Accepted, "description": "sent again: the same job"}},
)
async def create_job(
    job: JobIn,
    response: Response,
    ctx: Ctx,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> Accepted:
    """Write the job into the inbox; 202 with its id. With an ``Idempotency-Key``, a request
    sent again returns the same job (200) instead of making a second one."""
    body = job.model_dump(mode="json", exclude_none=True)
    write = partial(submit, body, ctx.rules, ctx.records, ctx.folders, idempotency_key)
    try:
        submitted = await to_thread.run_sync(write, limiter=WRITERS)
    except SubmitError as exc:
        raise HTTPException(exc.status, {"detail": str(exc), "field": exc.field}) from None
    record = submitted.record
    if not submitted.created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{record.id}"
    return Accepted(id=record.id, status_url=f"/v1/jobs/{record.id}", state=record.state.value)


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS | {404: {"model": Problem}})
def get_job(job_id: JobId, ctx: Ctx) -> dict[str, Any]:
    return describe(found(job_id, ctx), ctx.images)


@router.get("", response_model=JobList, responses=ERRORS)
def list_jobs(
    ctx: Ctx,
    state: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Newest first."""
    return {"jobs": [describe(r, ctx.images) for r in ctx.records.newest(state, limit)]}


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=Accepted,
    responses=ERRORS | {404: {"model": Problem}},
)
def retry_job(job_id: JobId, ctx: Ctx) -> Accepted:
    """A failed job back into the queue; the images it already made are not made again."""
    record = found(job_id, ctx)
    try:
        retry(record, ctx.records, ctx.folders)
    except SubmitError as exc:
        raise HTTPException(exc.status, {"detail": str(exc), "field": exc.field}) from None
    queued = JobStatus.QUEUED.value  # what retry() made it (``record`` is the copy read before)
    return Accepted(id=record.id, status_url=f"/v1/jobs/{record.id}", state=queued)


def found(job_id: str, ctx: Ctx) -> Record:
    record = ctx.records.load(job_id)
    if record is None:
        raise HTTPException(404, f"no job {job_id}")
    return record

"""The dashboard at ``/``: what a person wants to see of the daemon at a glance.

The queue by folder, the daemon's state (a red banner with the reason and what to do when it
is paused), the newest images as thumbnails, the failed jobs with a Retry button, and a form
to submit a prompt. Server-rendered (Jinja2, autoescaped: prompts are user text); the page
works without JavaScript, forms being plain POSTs answered with a redirect (303) to ``/``.
``static/dashboard.js`` only keeps the live part fresh: it fetches ``/fragments/live`` every
two seconds and swaps it in, and opens an image with its sidecar in an overlay.

Every route goes through ``auth.guard`` but the login form and the two static files; a page
asked for without the token goes to ``/login``, which sets the session cookie once the token
is given. Forms carry ``auth.csrf_token`` and are checked with ``auth.check_csrf``. What the
dashboard reads is what the daemon writes (records, the status board, images/); what it
writes goes through ``submit`` like the API's requests, and thumbnails (see ``thumbnails``).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from sora_watcher.records import ID
from sora_watcher.server import auth
from sora_watcher.server.context import Context
from sora_watcher.server.dashboard_view import (
    GALLERY_SIZE,
    daemon_state,
    failures,
    latest_images,
    queue_counts,
)
from sora_watcher.server.deps import Ctx, protected
from sora_watcher.submit import SubmitError, retry, submit
from sora_watcher.thumbnails import MEDIA_TYPE, Thumbnails

HERE = Path(__file__).parent
STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
COOKIE_MAX_AGE = 30 * 86400  # the token is asked for once a month, not at each visit
MAX_FORM_FIELDS = 20

# Pages hold a form token: never cached, never framed (a Retry button under someone else's
# page), and only our own script and style run in them.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}

FLASHES = {
    "queued": "Job {job} is queued: its images appear below as they are made.",
    "retried": "Job {job} is back in the queue.",
}

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

router = APIRouter(include_in_schema=False)
JobId = Annotated[str, PathParam(pattern=f"^{ID.pattern}$")]


def live_values(ctx: Context) -> dict[str, Any]:
    shots, total = latest_images(ctx.images, GALLERY_SIZE)
    return {
        "state": daemon_state(ctx),
        "queue": queue_counts(ctx, total),
        "shots": shots,
        "failures": failures(ctx),
        "csrf": auth.csrf_token(ctx),
    }


# -- rendering --------------------------------------------------------------------------------


def html(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    body = templates.get_template(template).render(**values)
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def flash(request: Request) -> str | None:
    """The message a redirect after a form carries: one of ours, never text from the URL."""
    kind = request.query_params.get("flash", "")
    job = request.query_params.get("job", "")
    if kind in FLASHES and ID.fullmatch(job):
        return FLASHES[kind].format(job=job)
    return None


def index(
    request: Request,
    ctx: Context,
    *,
    error: str | None = None,
    form: Mapping[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    capabilities = ctx.rules.capabilities
    ratios = list(capabilities.aspect_ratios)
    return html(
        "index.html",
        status,
        **live_values(ctx),
        flash=None if error else flash(request),
        error=error,
        form={
            "prompt": "",
            "aspect_ratio": "1:1" if "1:1" in ratios else ratios[0],
            "variants": str(min(capabilities.variants)),
            "quality": "",
            "name": "",
            **(form or {}),
        },
        ratios=ratios,
        variants=[str(n) for n in capabilities.variants],
        qualities=list(capabilities.qualities),
        max_prompt_chars=ctx.rules.max_prompt_chars,
        worker=ctx.settings.worker_id,
        backend=str(ctx.settings.backend.value),
        logged_in=ctx.service.api_token is not None,
    )


def home(flash_kind: str, job_id: str) -> RedirectResponse:
    return RedirectResponse(f"/?flash={flash_kind}&job={job_id}", status_code=303)


# -- who may ----------------------------------------------------------------------------------


def allowed(request: Request, ctx: Context) -> Response | None:
    """None if ``request`` may go on; else the answer: a person without the token is sent to
    the login form, anything else the guard refuses is refused."""
    try:
        auth.guard(request, ctx)
    except HTTPException as exc:
        if exc.status_code == 401:
            return RedirectResponse("/login", status_code=303)
        raise
    return None


async def form_fields(request: Request) -> dict[str, str]:
    """An HTML form's fields (urlencoded, as every form of the dashboard posts them); any
    other body reads as an empty form, which no check lets through."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    try:
        text = (await request.body()).decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form is not valid: reload the page") from None


Form = Annotated[dict[str, str], Depends(form_fields)]


def refused_form(request: Request, ctx: Context, form: Mapping[str, str]) -> Response | None:
    """A POST of the dashboard: allowed, and carrying the page's form token."""
    answer = allowed(request, ctx)
    if answer is not None:
        return answer
    try:
        auth.check_csrf(request, ctx, form.get("csrf"))
    except HTTPException as exc:
        return index(request, ctx, error=str(exc.detail), status=exc.status_code)
    return None


# -- routes -----------------------------------------------------------------------------------


@router.get("/login", response_model=None)
def login_form(ctx: Ctx) -> Response:
    if ctx.service.api_token is None:
        return RedirectResponse("/", status_code=303)  # nothing to log in to
    return html("login.html", error=None)


@router.post("/login", response_model=None)
def login(request: Request, ctx: Ctx, form: Form) -> Response:
    token = ctx.service.api_token
    if token is None:
        return RedirectResponse("/", status_code=303)
    if auth.cross_site(request):
        raise HTTPException(403, "refused: the request comes from another site")
    given = form.get("token", "").strip()
    if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8")):
        return html("login.html", 401, error="That is not the token: try again.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        auth.COOKIE,
        auth.session_value(token),
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/", response_model=None)
def dashboard(request: Request, ctx: Ctx) -> Response:
    return allowed(request, ctx) or index(request, ctx)


@router.get("/fragments/live", dependencies=[Depends(protected)])
def live(ctx: Ctx) -> HTMLResponse:
    """The part of the page the script refreshes: banner, state, queue, gallery, failures."""
    return html("live.html", **live_values(ctx))


@router.post("/submit", response_model=None)
def submit_prompt(request: Request, ctx: Ctx, form: Form) -> Response:
    """The form's prompt, checked and queued as the API's ``POST /v1/jobs`` does."""
    refused = refused_form(request, ctx, form)
    if refused is not None:
        return refused
    keys = ("prompt", "aspect_ratio", "variants", "quality", "name")
    fields = {k: form.get(k, "") for k in keys}
    try:
        body = job_body(fields)
        submitted = submit(body, ctx.rules, ctx.records, ctx.folders)
    except SubmitError as exc:
        return index(request, ctx, error=str(exc), form=fields, status=exc.status)
    return home("queued", submitted.record.id)


def job_body(fields: Mapping[str, str]) -> dict[str, Any]:
    """The JSON job the form stands for; an empty field is an option left out."""
    body: dict[str, Any] = {"prompt": fields["prompt"]}
    if fields["aspect_ratio"]:
        body["aspect_ratio"] = fields["aspect_ratio"]
    if fields["variants"]:
        if not re.fullmatch(r"[0-9]{1,3}", fields["variants"]):  # not "²", nor 5,000 digits
            raise SubmitError("variants: a whole number, like 1 or 2", "variants")
        body["variants"] = int(fields["variants"])
    if fields["quality"]:
        body["quality"] = fields["quality"]
    if fields["name"].strip():
        body["name"] = fields["name"].strip()
    return body


@router.post("/jobs/{job_id}/retry", response_model=None)
def retry_job(job_id: JobId, request: Request, ctx: Ctx, form: Form) -> Response:
    """A failed job back into the queue, as ``POST /v1/jobs/{id}/retry`` does."""
    refused = refused_form(request, ctx, form)
    if refused is not None:
        return refused
    record = ctx.records.load(job_id)
    if record is None:
        return index(request, ctx, error=f"There is no job {job_id}.", status=404)
    try:
        retry(record, ctx.records, ctx.folders)
    except SubmitError as exc:
        return index(request, ctx, error=str(exc), status=exc.status)
    return home("retried", job_id)


@router.get("/thumbnails/{path:path}", dependencies=[Depends(protected)])
def thumbnail(path: str, request: Request, ctx: Ctx) -> FileResponse:
    """The image's thumbnail, made on first request; its URL carries its version (``v``),
    so that the browser keeps it for good and asks again only for a replaced image."""
    found = Thumbnails(ctx.images, ctx.service.thumbnails).get(path)
    if found is None:
        raise HTTPException(404, "no such image under images/")
    cached, version = found
    forever = request.query_params.get("v") == version
    cache = "private, max-age=31536000, immutable" if forever else "private, no-cache"
    return FileResponse(cached, media_type=MEDIA_TYPE, headers={"Cache-Control": cache})


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise HTTPException(404, "no such file")
    return FileResponse(
        HERE / "static" / name,
        media_type=STATIC[name],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )

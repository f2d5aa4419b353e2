"""HTTP contract of the local Sora stand-in, plus one run of the page in real Chromium."""

from __future__ import annotations

import http.client
import io
import json
import signal
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sora_standin import StandIn, make_storage_state
from standin_kit.process import StandInServer, run_standin
from tests.conftest import wait_for

SECRET = "test-secret"
TASK_KEYS = {
    "id",
    "status",
    "prompt",
    "created_at",
    "progress_pct",
    "progress_pos_in_queue",
    "estimated_queue_wait_time",
    "queue_status_message",
    "generations",
    "num_unsafe_generations",
    "moderation_result",
    "failure_reason",
    "needs_user_review",
    "n_variants",
    "width",
    "height",
    "type",
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class Answer:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    form: bytes | None = None,
) -> Answer:
    data = json.dumps(body).encode() if body is not None else form
    content_type = "application/json" if body is not None else "application/x-www-form-urlencoded"
    all_headers = {"Content-Type": content_type} if data is not None else {}
    request = urllib.request.Request(url, data, {**all_headers, **(headers or {})}, method=method)
    try:
        with _opener.open(request, timeout=5) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read())


def cookie_header(state: dict[str, Any]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{c['name']}={c['value']}" for c in state["cookies"])}


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(delay=0.3, secret=SECRET) as server:
        yield server


@pytest.fixture
def bearer(standin: StandIn) -> dict[str, str]:
    session = call(
        f"{standin.base_url}/api/auth/session", headers=cookie_header(standin.storage_state())
    ).json()
    return {"Authorization": f"Bearer {session['accessToken']}"}


def submit(standin: StandIn, bearer: dict[str, str], **fields: Any) -> str:
    body: dict[str, Any] = {"type": "image_gen", "operation": "simple_compose", "prompt": "a fox"}
    body |= {"n_variants": 1, "width": 480, "height": 480, "n_frames": 1, "inpaint_items": []}
    answer = call(f"{standin.base_url}/backend/video_gen", "POST", body | fields, bearer)
    assert answer.status == 200, answer.body
    task_id: str = answer.json()["id"]
    return task_id


def test_without_session_everything_points_to_login(standin: StandIn) -> None:
    answer = call(f"{standin.base_url}/api/auth/session")
    assert answer.status == 200
    assert answer.body == b"null"
    assert answer.headers["Content-Type"] == "application/json"
    home = call(f"{standin.base_url}/")
    assert home.status == 302
    assert home.headers["Location"] == "/login?next=/"
    login = call(f"{standin.base_url}/login?next=/")
    assert login.status == 200
    assert b"Log in to Sora" in login.body and b"Continue" in login.body


def test_session_cookie_gives_token_and_page(standin: StandIn) -> None:
    headers = cookie_header(standin.storage_state("alice"))
    session = call(f"{standin.base_url}/api/auth/session", headers=headers).json()
    assert session["user"]["name"] == "alice"
    assert session["user"]["id"].startswith("user-")
    assert session["accessToken"].count(".") == 2
    assert session["expires"].endswith("Z")
    page = call(f"{standin.base_url}/", headers=headers)
    assert page.status == 200
    assert b'placeholder="Describe your image..."' in page.body


def test_login_form_sets_a_session_cookie(standin: StandIn) -> None:
    refused = call(f"{standin.base_url}/login", "POST", form=b"email=nobody&next=%2F")
    assert refused.status == 400 and b'role="alert"' in refused.body
    answer = call(f"{standin.base_url}/login", "POST", form=b"email=bob%40example.org&next=%2F")
    assert answer.status == 303 and answer.headers["Location"] == "/"
    cookie = answer.headers["Set-Cookie"].split(";")[0]
    assert cookie.startswith("__Secure-next-auth.session-token=")
    session = call(f"{standin.base_url}/api/auth/session", headers={"Cookie": cookie}).json()
    assert session["user"]["email"] == "bob@example.org"


def test_storage_state_format_and_validity(standin: StandIn) -> None:
    state = make_storage_state(standin.base_url, "demo", SECRET)
    session_cookie, device_cookie = state["cookies"]
    assert session_cookie["name"] == "__Secure-next-auth.session-token"
    assert session_cookie["domain"] == "127.0.0.1"
    assert session_cookie["secure"] and session_cookie["httpOnly"]
    assert session_cookie["sameSite"] == "Lax" and isinstance(session_cookie["expires"], float)
    assert device_cookie["name"] == "oai-did"
    assert state["origins"] == []

    def user_for(cookie: str) -> Any:
        return call(f"{standin.base_url}/api/auth/session", headers={"Cookie": cookie}).json()

    value = session_cookie["value"]
    assert user_for(f"__Secure-next-auth.session-token={value}")["user"]["name"] == "demo"
    assert user_for(f"__Secure-authjs.session-token={value}")["user"]["name"] == "demo"
    assert user_for(f"__Secure-next-auth.session-token={value[:-1]}x") is None
    other_secret = make_storage_state(standin.base_url, "demo", "another-secret")
    assert user_for(f"x={other_secret['cookies'][0]['value']}") is None
    expired = make_storage_state(standin.base_url, "demo", SECRET, valid_for=-10)
    assert call(f"{standin.base_url}/", headers=cookie_header(expired)).status == 302


def test_backend_requires_a_valid_bearer(standin: StandIn, bearer: dict[str, str]) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic x"}):
        answer = call(f"{standin.base_url}/backend/v2/list_tasks?limit=20", headers=headers)
        assert answer.status == 401
        assert answer.json() == {
            "error": {
                "message": "Your authentication token has expired. Please try signing in again.",
                "type": "invalid_request_error",
                "param": None,
                "code": "token_expired",
            }
        }
    answer = call(f"{standin.base_url}/backend/v2/list_tasks?limit=20", headers=bearer)
    assert answer.status == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.json() == {"task_responses": [], "last_id": None, "has_more": False}


def test_task_goes_queued_running_succeeded(standin: StandIn, bearer: dict[str, str]) -> None:
    standin.delay = 1.0  # queued for 0.15 s (not 45 ms): long enough for a look to see it
    task_id = submit(standin, bearer, prompt="a lighthouse", n_variants=2, width=854, height=480)
    assert task_id.startswith("task_01") and len(task_id) == len("task_01") + 26

    seen: list[str] = []

    def finished() -> dict[str, Any] | None:
        task: dict[str, Any] = call(
            f"{standin.base_url}/backend/video_gen/{task_id}", headers=bearer
        ).json()
        if not seen or seen[-1] != task["status"]:
            seen.append(task["status"])
        assert set(task) == TASK_KEYS
        return task if task["status"] == "succeeded" else None

    task = wait_for(finished)
    assert seen == ["queued", "running", "succeeded"]
    assert task["progress_pct"] != 1.0
    assert task["moderation_result"] == {
        "type": "passed",
        "code": None,
        "is_output_rejection": False,
    }
    assert (task["n_variants"], task["width"], task["height"]) == (2, 854, 480)
    generations = task["generations"]
    assert len(generations) == 2
    assert all(g["task_id"] == task_id and g["id"].startswith("gen_") for g in generations)
    assert (generations[0]["width"], generations[0]["height"]) == (1536, 1024)
    assert "/vg-assets/assets%2Ftask_" in generations[0]["url"]
    assert generations[1]["url"].split("?")[0].endswith("_src_1.png")
    assert generations[0]["encodings"]["thumbnail"]["path"].split("?")[0].endswith("_thumb.webp")

    listing = call(f"{standin.base_url}/backend/v2/list_tasks?limit=20", headers=bearer).json()
    assert [t["id"] for t in listing["task_responses"]] == [task_id]
    unknown = call(f"{standin.base_url}/backend/video_gen/task_01unknown", headers=bearer)
    assert unknown.status == 404 and "error" in unknown.json()


def test_listing_is_newest_first_and_pages(standin: StandIn, bearer: dict[str, str]) -> None:
    ids = [submit(standin, bearer, prompt=f"prompt {n}") for n in range(3)]
    base = f"{standin.base_url}/backend"
    page = call(f"{base}/v2/list_tasks?limit=2", headers=bearer).json()
    assert [t["id"] for t in page["task_responses"]] == [ids[2], ids[1]]
    assert page["last_id"] == ids[1] and page["has_more"] is True
    older = call(f"{base}/video_gen?limit=2&before={ids[1]}", headers=bearer).json()
    assert [t["id"] for t in older["task_responses"]] == [ids[0]]
    assert older["has_more"] is False
    # Tasks are per user.
    other = call(
        f"{standin.base_url}/api/auth/session", headers=cookie_header(standin.storage_state("eve"))
    ).json()
    eve = {"Authorization": f"Bearer {other['accessToken']}"}
    assert call(f"{base}/v2/list_tasks", headers=eve).json()["task_responses"] == []
    assert call(f"{base}/video_gen/{ids[0]}", headers=eve).status == 404


def test_bad_submissions_get_the_error_shape(standin: StandIn, bearer: dict[str, str]) -> None:
    url = f"{standin.base_url}/backend/video_gen"
    for body, param in (
        ({"type": "image_gen", "n_variants": 1}, "prompt"),
        ({"type": "image_gen", "prompt": "  ", "n_variants": 1}, "prompt"),
        ({"type": "image_gen", "prompt": "x", "n_variants": 3}, "n_variants"),
    ):
        answer = call(url, "POST", body, bearer)
        assert answer.status == 400
        assert answer.json()["error"]["param"] == param
        assert answer.json()["error"]["type"] == "invalid_request_error"
    assert standin.submissions == []


def test_images_full_size_thumbnail_and_signature(standin: StandIn, bearer: dict[str, str]) -> None:
    standin.delay = 0
    task_id = submit(standin, bearer, prompt="a tall tower", width=480, height=854)
    task = call(f"{standin.base_url}/backend/video_gen/{task_id}", headers=bearer).json()
    generation = task["generations"][0]

    full = call(generation["url"])
    assert full.status == 200 and full.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(full.body))
    assert (image.format, image.size) == ("PNG", (1024, 1536))
    assert call(generation["url"]).body == full.body  # deterministic

    thumb = call(generation["encodings"]["thumbnail"]["path"])
    thumbnail = Image.open(io.BytesIO(thumb.body))
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (256, 384))
    source = Image.open(io.BytesIO(call(generation["encodings"]["source"]["path"]).body))
    assert (source.format, source.size) == ("WEBP", (1024, 1536))

    head = call(generation["url"], "HEAD")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["Content-Length"]) == len(full.body)

    forged = generation["url"].replace("sig=", "sig=0")
    assert call(forged).status == 403
    other_task = generation["url"].replace("_src_0.png", "_src_1.png")
    assert call(other_task).status == 403


def test_submissions_and_control_endpoints(standin: StandIn, bearer: dict[str, str]) -> None:
    base = standin.base_url
    assert call(f"{base}/_standin/health").json() == {"ok": True}
    answer = call(f"{base}/_standin/config", "POST", {"delay": 5.5})
    assert answer.status == 200 and standin.delay == 5.5
    task_id = submit(standin, bearer, prompt="a calm sea", n_variants=4)
    listed = call(f"{base}/_standin/submissions").json()
    assert [(s["task_id"], s["prompt"], s["n_variants"]) for s in listed] == [
        (task_id, "a calm sea", 4)
    ]
    assert standin.submissions[0]["task_id"] == task_id and standin.submissions[0]["at"] > 0
    task = call(f"{base}/backend/video_gen/{task_id}", headers=bearer).json()
    assert task["status"] == "queued"  # the new delay applies
    assert call(f"{base}/_standin/config", "POST", {"delay": -1}).status == 400
    assert call(f"{base}/nothing/here").json()["error"]["code"] == "not_found"


def test_extensions_unsafe_prompt_and_concurrency_limit(
    standin: StandIn, bearer: dict[str, str]
) -> None:
    standin.delay = 0
    task_id = submit(standin, bearer, prompt="something [standin:unsafe]")
    task = call(f"{standin.base_url}/backend/video_gen/{task_id}", headers=bearer).json()
    assert task["status"] == "failed" and task["generations"] == []
    assert task["moderation_result"]["type"] == "terminal" and task["failure_reason"]

    config = call(f"{standin.base_url}/_standin/config", "POST", {"delay": 60, "max_concurrent": 1})
    assert config.json() == {"delay": 60.0, "max_concurrent": 1}
    submit(standin, bearer)
    refused = call(f"{standin.base_url}/backend/video_gen", "POST", {"prompt": "x"}, bearer)
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "too_many_concurrent_tasks"


def test_stop_cuts_kept_alive_connections(standin: StandIn) -> None:
    host, port = standin.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("GET", "/_standin/health")
    assert connection.getresponse().read() == b'{"ok": true}'
    standin.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        connection.request("GET", "/_standin/health")
        connection.getresponse()


def test_cli_serves_until_sigterm_and_writes_sessions(tmp_path: Path) -> None:
    out = tmp_path / "session.json"
    options = ["--base-url", "http://127.0.0.1:1", "--out", str(out), "--secret", SECRET]
    made = run_standin("sora_standin", "make-session", *options, timeout=20)
    assert made.returncode == 0, made.stdout + made.stderr
    value = json.loads(out.read_text())["cookies"][0]["value"]
    assert value not in made.stdout + made.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    refused = run_standin("sora_standin", "--host", "0.0.0.0", timeout=20)
    assert refused.returncode != 0 and "loopback" in refused.stderr

    with StandInServer("sora_standin", "--secret", SECRET) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        state = json.loads(out.read_text())
        session = call(f"{server.base_url}/api/auth/session", headers=cookie_header(state)).json()
        assert session["user"]["name"] == "demo"
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    # nothing but the one line it prints once listening
    assert server.output == [f"sora-standin listening on {server.base_url}"]


@pytest.mark.e2e
def test_page_in_real_chromium(standin: StandIn, browser: Any) -> None:
    standin.delay = 0.6
    context = browser.new_context(storage_state=standin.storage_state())
    try:
        page = context.new_page()
        page.goto(standin.base_url + "/")
        composer = page.get_by_placeholder("Describe your image...")
        create = page.get_by_role("button", name="Create image")
        # A value set without an input event must not enable the button (React-like).
        composer.evaluate("element => { element.value = 'sneaky' }")
        assert create.is_disabled()
        composer.fill("")

        page.get_by_role("button", name="Settings").click()
        page.locator('[role="menu"][data-state="open"]').get_by_text("3:2").click()
        page.get_by_role("button", name="Settings").click()
        page.get_by_role("menuitemradio", name="2 images").click()

        composer.click()
        page.keyboard.type("a paper boat on a pond")
        assert create.is_enabled()
        create.click()

        tile = page.wait_for_selector(
            '[data-status="succeeded"] img[data-generation-id]', timeout=8000
        )
        assert tile is not None
        sources = page.eval_on_selector_all(
            '[data-status="succeeded"] img', "images => images.map(i => i.src)"
        )
        assert len(sources) == 2
        assert all("_thumb.webp" in src for src in sources)
        page.wait_for_selector('[role="status"]:has-text("Your image is ready")')
        assert composer.input_value() == ""

        token = page.evaluate(
            "fetch('/api/auth/session').then(r => r.json()).then(s => s.accessToken)"
        )
        listing = call(
            f"{standin.base_url}/backend/v2/list_tasks?limit=20",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        (task,) = listing["task_responses"]
        assert task["status"] == "succeeded" and task["prompt"] == "a paper boat on a pond"
        assert (task["n_variants"], task["width"], task["height"]) == (2, 720, 480)
        assert standin.submissions[0]["type"] == "image_gen"
    finally:
        context.close()

"""Failure modes and page variants of the stand-in: what a client sees when each is switched on.

The HTTP answers are checked over urllib; the page variants in real Chromium, as a user sees
them (what is on screen, what a click at a position hits) and used the way a user would.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

# pytest puts tests/ on sys.path (no __init__.py there): share the HTTP helpers.
from test_standin import call, cookie_header

from sora_standin import StandIn, auth
from sora_standin.scenarios import NAMES
from tests.conftest import wait_for

SECRET = "scenario-secret"
PROMPT_BODY: dict[str, Any] = {
    "type": "image_gen",
    "operation": "simple_compose",
    "prompt": "a red kite",
    "n_variants": 1,
    "width": 480,
    "height": 480,
    "n_frames": 1,
    "inpaint_items": [],
}


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(delay=0.3, secret=SECRET) as server:
        yield server


@pytest.fixture
def bearer(standin: StandIn) -> dict[str, str]:
    return bearer_for(standin, standin.storage_state())


def bearer_for(standin: StandIn, state: dict[str, Any]) -> dict[str, str]:
    session = call(f"{standin.base_url}/api/auth/session", headers=cookie_header(state)).json()
    return {"Authorization": f"Bearer {session['accessToken']}"}


def post(standin: StandIn, bearer: dict[str, str], **fields: Any) -> Any:
    return call(f"{standin.base_url}/backend/video_gen", "POST", PROMPT_BODY | fields, bearer)


def task_of(standin: StandIn, bearer: dict[str, str], **fields: Any) -> dict[str, Any]:
    """Submit, then read the task once it has ended (or after `delay` if it never ends)."""
    answer = post(standin, bearer, **fields)
    assert answer.status == 200, answer.body
    url = f"{standin.base_url}/backend/video_gen/{answer.json()['id']}"
    deadline = time.monotonic() + standin.delay + 0.2

    def ended() -> Any:
        task = call(url, headers=bearer).json()
        done = task["status"] not in ("queued", "running") or time.monotonic() > deadline
        return task if done else None

    return wait_for(ended)


def error_of(answer: Any) -> dict[str, Any]:
    body = answer.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


# --- control ---------------------------------------------------------------------------------


def test_unknown_names_and_bad_params_are_refused(standin: StandIn) -> None:
    with pytest.raises(ValueError, match="valid: cloudflare, rate_limit"):
        standin.scenario("captcha")
    with pytest.raises(ValueError, match="no parameter 'sec'"):
        standin.scenario("slow_cdn", sec=1)
    with pytest.raises(ValueError, match="count"):
        standin.scenario("heavy_load", count=0)
    with pytest.raises(ValueError, match="popup"):
        standin.page_variant = {"popup": "banner"}
    url = f"{standin.base_url}/_standin"
    refused = call(f"{url}/scenario", "POST", {"name": "captcha"})
    assert refused.status == 400
    assert all(name in error_of(refused)["message"] for name in NAMES)
    bad_param = call(f"{url}/scenario", "POST", {"name": "rate_limit", "params": {"credit": 1}})
    assert bad_param.status == 400 and "true or false" in error_of(bad_param)["message"]
    bad_page = call(f"{url}/config", "POST", {"page": {"button": "big"}})
    assert bad_page.status == 400 and error_of(bad_page)["param"] == "page"
    assert call(f"{url}/scenarios").json() == {"scenarios": {}, "page": {}}


def test_listing_counts_down_and_clear_resets(standin: StandIn, bearer: dict[str, str]) -> None:
    url = f"{standin.base_url}/_standin"
    armed = call(f"{url}/scenario", "POST", {"name": "heavy_load", "count": 2}).json()
    assert armed["scenarios"] == {"heavy_load": {"remaining": 2, "params": {}}}
    call(f"{url}/scenario", "POST", {"name": "rate_limit", "count": None, "params": {}})
    call(f"{url}/config", "POST", {"page": {"button": "generate"}})
    assert post(standin, bearer).status == 503
    listing = call(f"{url}/scenarios").json()
    assert listing["scenarios"]["heavy_load"]["remaining"] == 1
    assert listing["scenarios"]["rate_limit"] == {
        "remaining": None,
        "params": {"resets_in": 3, "credit": False},
    }
    assert listing["page"] == {"button": "generate"}
    assert post(standin, bearer).status == 503
    for _ in range(3):  # count None: until cleared
        assert post(standin, bearer).status == 429
    assert call(f"{url}/clear", "POST", {}).json() == {"scenarios": {}, "page": {}}
    assert standin.page_variant == {}
    assert post(standin, bearer).status == 200


# --- answers of the site -----------------------------------------------------------------------


def test_cloudflare_challenge_then_block_page(standin: StandIn) -> None:
    headers = cookie_header(standin.storage_state())
    standin.scenario("cloudflare", count=2)
    for path in ("/", "/api/auth/session"):
        page = call(standin.base_url + path, headers=headers)
        assert page.status == 403
        assert page.headers["Content-Type"].startswith("text/html")
        assert page.headers["Server"] == "cloudflare"
        assert page.headers["cf-mitigated"] == "challenge"
        text = page.body.decode()
        assert "<title>Just a moment...</title>" in text
        assert "Checking your browser" in text
        assert "cf-challenge" in text and "challenge-platform" in text
    assert call(f"{standin.base_url}/", headers=headers).status == 200
    assert call(f"{standin.base_url}/api/auth/session", headers=headers).json()["user"]

    standin.scenario("cloudflare", block=True)
    blocked = call(f"{standin.base_url}/", headers=headers)
    assert blocked.status == 403 and "cf-mitigated" not in blocked.headers
    assert "<title>Attention Required! | Cloudflare</title>" in blocked.body.decode()
    assert "Sorry, you have been blocked" in blocked.body.decode()


@pytest.mark.parametrize(
    ("name", "params", "status", "expected"),
    [
        (
            "rate_limit",
            {"resets_in": 120},
            429,
            {
                "message": "You've reached your limit of generations for today.",
                "type": "rate_limit_exhausted",
                "code": "rate_limit_exhausted",
                "param": None,
                "access_resets_in_seconds": 120,
            },
        ),
        ("rate_limit", {"credit": True}, 429, {"type": "rate_limit_and_credit_balance"}),
        (
            "too_many_concurrent",
            {},
            429,
            {
                "code": "too_many_concurrent_tasks",
                "message": "You already have 3 generations in progress. "
                "Please wait for one to finish.",
            },
        ),
        (
            "heavy_load",
            {},
            503,
            {
                "code": "heavy_load",
                "message": "We're experiencing heavy load. Please try again later.",
            },
        ),
        (
            "unable_to_create",
            {},
            400,
            {
                "code": "content_policy_violation",
                "message": "This prompt may violate our content policies.",
            },
        ),
    ],
)
def test_submissions_refused(
    standin: StandIn,
    bearer: dict[str, str],
    name: str,
    params: dict[str, Any],
    status: int,
    expected: dict[str, Any],
) -> None:
    standin.scenario(name, count=2, **params)
    for _ in range(2):
        answer = post(standin, bearer)
        assert answer.status == status
        error = error_of(answer)
        assert error.items() >= expected.items()
    if name == "rate_limit":
        resets = params.get("resets_in", 3)
        assert (
            answer.json()["access_resets_in_seconds"] == resets == error["access_resets_in_seconds"]
        )
    assert standin.submissions == []
    assert post(standin, bearer).status == 200  # spent: back to normal


def test_token_expired_while_the_session_lives(standin: StandIn, bearer: dict[str, str]) -> None:
    standin.scenario("token_expired", count=2)
    listing = f"{standin.base_url}/backend/v2/list_tasks?limit=20"
    assert error_of(call(listing, headers=bearer))["code"] == "token_expired"
    refused = post(standin, bearer)
    assert refused.status == 401 and error_of(refused)["code"] == "token_expired"
    session = call(
        f"{standin.base_url}/api/auth/session", headers=cookie_header(standin.storage_state())
    )
    assert session.json()["accessToken"]
    assert call(listing, headers=bearer).status == 200


@pytest.mark.parametrize(
    ("name", "status", "moderation", "unsafe", "reason"),
    [
        (
            "moderation",
            "failed",
            {"type": "terminal", "code": "sexual", "is_output_rejection": False},
            0,
            "This content may violate our content policies.",
        ),
        ("unsafe_output", "succeeded", {"is_output_rejection": True}, 2, None),
        ("task_failed", "failed", {"type": "passed"}, 0, "Internal error while generating."),
        ("cancelled", "cancelled", {"type": "passed"}, 0, None),
    ],
)
def test_tasks_that_end_badly(
    standin: StandIn,
    bearer: dict[str, str],
    name: str,
    status: str,
    moderation: dict[str, Any],
    unsafe: int,
    reason: str | None,
) -> None:
    standin.delay = 0
    standin.scenario(name)
    task = task_of(standin, bearer, n_variants=2)
    assert task["status"] == status and task["generations"] == []
    assert task["moderation_result"].items() >= moderation.items()
    assert task["num_unsafe_generations"] == unsafe
    assert task["failure_reason"] == reason
    normal = task_of(standin, bearer)
    assert normal["status"] == "succeeded" and len(normal["generations"]) == 1


def test_outcomes_are_bound_to_successive_tasks(standin: StandIn, bearer: dict[str, str]) -> None:
    standin.delay = 0.2
    standin.scenario("stalled", progress=0.5)
    standin.scenario("cancelled")
    stalled = task_of(standin, bearer)  # read once its delay has passed
    assert (stalled["status"], stalled["progress_pct"]) == ("running", 0.5)
    assert task_of(standin, bearer)["status"] == "cancelled"
    assert task_of(standin, bearer)["status"] == "succeeded"


def test_full_size_downloads_slow_and_truncated(standin: StandIn, bearer: dict[str, str]) -> None:
    standin.delay = 0
    generation = task_of(standin, bearer)["generations"][0]
    complete = call(generation["url"]).body
    standin.scenario("slow_cdn", seconds=0.4)
    call(generation["encodings"]["thumbnail"]["path"])  # thumbnails are not concerned
    started = time.monotonic()
    assert call(generation["url"]).body == complete
    assert time.monotonic() - started >= 0.4
    standin.scenario("truncated_image")
    truncated = call(generation["url"])
    assert truncated.body == complete[: len(complete) // 2]
    assert int(truncated.headers["Content-Length"]) == len(truncated.body)
    with pytest.raises(OSError):
        Image.open(io.BytesIO(truncated.body)).load()
    assert call(generation["url"]).body == complete


def test_stop_does_not_wait_for_a_slow_download(standin: StandIn, bearer: dict[str, str]) -> None:
    standin.delay = 0
    url = task_of(standin, bearer)["generations"][0]["url"]
    standin.scenario("slow_cdn", seconds=60)
    outcome: list[object] = []

    def download() -> None:
        try:
            outcome.append(call(url))
        except OSError as error:  # the connection is cut: what a client of a dead CDN sees
            outcome.append(error)

    downloading = threading.Thread(target=download, daemon=True)
    downloading.start()
    wait_for(lambda: "slow_cdn" not in standin.armed_scenarios())  # the wait has begun
    started = time.monotonic()
    standin.stop()
    downloading.join(timeout=5)
    assert time.monotonic() - started < 2
    assert len(outcome) == 1 and isinstance(outcome[0], OSError)


def test_webp_source(standin: StandIn, bearer: dict[str, str]) -> None:
    standin.delay = 0
    standin.scenario("webp_source")
    generation = task_of(standin, bearer, width=854, height=480)["generations"][0]
    assert generation["url"].split("?")[0].endswith("_src_0.webp")
    answer = call(generation["url"])
    assert answer.headers["Content-Type"] == "image/webp"
    image = Image.open(io.BytesIO(answer.body))
    assert (image.format, image.size) == ("WEBP", (1536, 1024))
    # No PNG behind it: a driver has to convert the WEBP itself.
    png = generation["url"].split("/vg-assets/")[1].split("?")[0].replace("%2F", "/")
    png = png.replace("_src_0.webp", "_src_0.png")
    query = auth.asset_query(png, SECRET, time.time())
    assert call(f"{standin.base_url}/vg-assets/{png}?{query}").status == 404
    normal = task_of(standin, bearer)["generations"][0]
    assert normal["url"].split("?")[0].endswith("_src_0.png")


def test_phone_verification_over_http(standin: StandIn, bearer: dict[str, str]) -> None:
    headers = cookie_header(standin.storage_state())
    standin.scenario("phone_verification")
    assert post(standin, bearer).status == 200  # no page has shown the dialog yet
    page = call(f"{standin.base_url}/", headers=headers)
    assert b'"phone_verification": true' in page.body
    refused = post(standin, bearer)
    assert refused.status == 403
    assert error_of(refused)["code"] == "phone_verification_required"
    assert error_of(refused)["message"] == "Verify your phone number to continue."
    assert b"phone_verification" not in call(f"{standin.base_url}/", headers=headers).body
    assert post(standin, bearer).status == 200


def test_no_polling_is_told_to_the_page(standin: StandIn, bearer: dict[str, str]) -> None:
    standin.scenario("no_polling")
    assert post(standin, bearer).headers["X-Standin-No-Polling"] == "1"
    assert "X-Standin-No-Polling" not in post(standin, bearer).headers


def test_revoke_sessions(standin: StandIn, bearer: dict[str, str]) -> None:
    old = cookie_header(standin.storage_state())
    call(f"{standin.base_url}/_standin/revoke", "POST", {})
    assert call(f"{standin.base_url}/api/auth/session", headers=old).body == b"null"
    assert call(f"{standin.base_url}/", headers=old).status == 302
    assert error_of(post(standin, bearer))["code"] == "token_expired"
    fresh = bearer_for(standin, standin.storage_state())
    assert post(standin, fresh).status == 200
    login = call(f"{standin.base_url}/login", "POST", form=b"email=ann%40example.org&next=%2F")
    cookie = {"Cookie": login.headers["Set-Cookie"].split(";")[0]}
    assert call(f"{standin.base_url}/api/auth/session", headers=cookie).json()["user"]


# --- the page in real Chromium -----------------------------------------------------------------


@pytest.fixture
def page(browser: Any, standin: StandIn) -> Iterator[Any]:
    context = browser.new_context(storage_state=standin.storage_state())
    context.set_default_timeout(5000)
    yield context.new_page()
    context.close()


def open_composer(page: Any, standin: StandIn, **variant: Any) -> Any:
    standin.page_variant = variant
    page.goto(f"{standin.base_url}/")
    return page.get_by_role("textbox", name="Prompt")


def submitted_prompt(standin: StandIn) -> str:
    entries = wait_for(standin.submissions_snapshot)
    prompt: str = entries[-1]["prompt"]
    return prompt


def hit_at_centre(page: Any, element: Any) -> str:
    """What a click at the element's position would land on: 'overlay' or the element's id."""
    box = element.bounding_box()
    point = [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2]
    return str(
        page.evaluate(
            """([x, y]) => {
                const hit = document.elementFromPoint(x, y);
                return hit.closest('.overlay') ? 'overlay' : hit.id;
            }""",
            point,
        )
    )


@pytest.mark.e2e
def test_contenteditable_composer(page: Any, standin: StandIn) -> None:
    composer = open_composer(page, standin, composer="contenteditable")
    assert page.locator("textarea").count() == 0
    assert composer.evaluate("e => [e.tagName, e.contentEditable]") == ["DIV", "true"]
    assert composer.get_attribute("data-placeholder") == "Describe your image..."
    placeholder = composer.evaluate("e => getComputedStyle(e, '::before').content")
    assert placeholder == '"Describe your image..."'
    create = page.get_by_role("button", name="Create image")
    composer.click()
    page.keyboard.type("a kite over dunes")
    create.click()
    assert submitted_prompt(standin) == "a kite over dunes"
    page.wait_for_function("document.getElementById('prompt').textContent === ''")


@pytest.mark.e2e
@pytest.mark.parametrize(("button", "name"), [("generate", "Generate"), ("icon", "Create image")])
def test_button_variants(page: Any, standin: StandIn, button: str, name: str) -> None:
    composer = open_composer(page, standin, button=button)
    create = page.get_by_role("button", name=name, exact=True)
    if button == "icon":
        # The name comes from visually hidden text: nothing readable on screen but the icon.
        assert create.get_attribute("aria-label") is None
        assert create.locator("svg").is_visible()
        hidden = create.locator(".sr-only")
        assert hidden.text_content() == "Create image"
        assert hidden.bounding_box()["width"] <= 1
    else:
        assert create.inner_text() == "Generate" == create.get_attribute("aria-label")
    assert create.is_disabled()
    composer.click()
    page.keyboard.type(f"{button} button")
    create.click()
    assert submitted_prompt(standin) == f"{button} button"


@pytest.mark.e2e
def test_no_button_enter_submits(page: Any, standin: StandIn) -> None:
    composer = open_composer(page, standin, button="none", settings=False)
    assert page.locator("button").count() == 0  # neither create nor settings
    composer.click()
    page.keyboard.type("enter only")
    page.keyboard.press("Enter")
    assert submitted_prompt(standin) == "enter only"
    assert (standin.submissions[0]["width"], standin.submissions[0]["height"]) == (480, 480)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("popup", "title", "dismiss"),
    [
        (True, "Download the Sora mobile app", "Not now"),
        ("app", "Download the Sora mobile app", "Close"),
        ("announcement", "Introducing remix, blend and other new features", "Got it"),
    ],
)
def test_popup_covers_the_composer(
    page: Any, standin: StandIn, popup: Any, title: str, dismiss: str
) -> None:
    composer = open_composer(page, standin, popup=popup)
    dialog = page.get_by_role("dialog", name=title)
    assert dialog.is_visible()
    buttons = dialog.get_by_role("button").all_inner_texts()
    assert buttons == (["×", "Not now"] if popup != "announcement" else ["Got it"])
    assert hit_at_centre(page, composer) == "overlay"
    box = composer.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert page.evaluate("document.activeElement.id") != "prompt"
    assert dialog.is_visible()

    dialog.get_by_role("button", name=dismiss, exact=True).click()
    assert dialog.count() == 0
    assert hit_at_centre(page, composer) == "prompt"
    composer.click()
    page.keyboard.type("after the popup")
    page.get_by_role("button", name="Create image").click()
    assert submitted_prompt(standin) == "after the popup"


@pytest.mark.e2e
def test_phone_verification_blocks_until_reload(page: Any, standin: StandIn) -> None:
    standin.scenario("phone_verification")
    composer = open_composer(page, standin)
    dialog = page.get_by_role("dialog", name="Verify your phone number to continue.")
    assert dialog.is_visible() and dialog.get_by_role("button").count() == 0
    assert hit_at_centre(page, composer) == "overlay"
    page.keyboard.press("Escape")
    assert dialog.is_visible()
    # Whatever gets past the dialog (here, focus moved by script) is refused by the server.
    composer.fill("forced")
    composer.press("Enter")
    page.get_by_role("status").filter(
        has_text="Unable to create: Verify your phone number to continue."
    ).wait_for()
    page.reload()
    assert dialog.count() == 0
    composer.click()
    page.keyboard.type("verified")
    page.keyboard.press("Enter")
    assert submitted_prompt(standin) == "verified"


@pytest.mark.e2e
def test_unable_to_create_toast(page: Any, standin: StandIn) -> None:
    standin.scenario("unable_to_create")
    composer = open_composer(page, standin)
    composer.click()
    page.keyboard.type("something refused")
    page.keyboard.press("Enter")
    toast = page.get_by_role("status").filter(has_text="Unable to create")
    assert toast.inner_text() == "Unable to create: This prompt may violate our content policies."


@pytest.mark.e2e
def test_no_polling_until_reload(page: Any, standin: StandIn) -> None:
    standin.scenario("no_polling")
    # The first poll (session, then list) must be over before listening for more.
    with page.expect_response(re.compile(r"/list_tasks")):
        composer = open_composer(page, standin)
    composer.click()
    page.keyboard.type("lost task")
    with page.expect_response(re.compile(r"/backend/video_gen$")):
        page.keyboard.press("Enter")
    # A normal page asks for the list at once after submitting, then every 0.7 s.
    timeout_error = pytest.importorskip("playwright.sync_api").TimeoutError
    with (
        pytest.raises(timeout_error),
        page.expect_request(re.compile(r"/list_tasks"), timeout=1000),
    ):
        pass
    assert page.locator("[data-task-id]").count() == 0
    page.reload()
    page.wait_for_selector('[data-status="succeeded"] img')


@pytest.mark.e2e
def test_cloudflare_and_revoked_session_in_the_browser(
    browser: Any, page: Any, standin: StandIn
) -> None:
    standin.scenario("cloudflare")
    page.goto(f"{standin.base_url}/")
    assert page.title() == "Just a moment..."
    assert page.get_by_text("Checking your browser").is_visible()
    page.reload()
    assert page.title() == "Sora"

    standin.revoke_sessions()
    page.reload()
    assert page.url.endswith("/login?next=/")
    context = browser.new_context(storage_state=standin.storage_state())
    try:
        fresh = context.new_page()
        fresh.goto(f"{standin.base_url}/")
        assert fresh.get_by_placeholder("Describe your image...").is_visible()
    finally:
        context.close()

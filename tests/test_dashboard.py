"""The dashboard in real Chromium, against a real daemon process and its real folders.

The daemon runs the instant backend (64x64 PNGs at once), or the openai backend against its
local stand-in when the test needs the queue paused. The HTTP service listens on a port the
kernel chooses (``SORA_HTTP=127.0.0.1:0``), read from the daemon's log line.

The README's picture of the dashboard is made by ``scripts/screenshot.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from openai_standin import ImagesStandIn
from sora_driver.browser import find_browser, launch
from sora_watcher.thumbnails import Thumbnails
from standin_kit.process import daemon_env
from tests.conftest import Daemon, drop

pytestmark = pytest.mark.e2e
expect.set_options(timeout=15_000)  # a busy two-core machine: the events come, a bit later

TOKEN = "dashboard-token-0123456789abcdefSECRET"
KEY = "sk-standin-dashboard-0123456789abcdef"
WRONG_KEY = "sk-proj-WRONGkey0123456789abcdefghijklmnop"
SETTINGS = {"SORA_WORKER_ID": "w1", "SORA_SETTLE_SECONDS": "0.2", "SORA_HTTP": "127.0.0.1:0"}


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module, launched as the daemon launches its own."""
    executable = find_browser(os.environ.get("SORA_BROWSER_PATH"))  # before Playwright starts
    with sync_playwright() as pw:
        chromium = launch(pw, executable, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path


def start(
    home: Path,
    daemons: list[Daemon],
    backend: str = "instant",
    api_url: str | None = None,
    **env: str,
) -> tuple[Daemon, str]:
    """A daemon with its dashboard, watching; and the dashboard's URL."""
    daemon = Daemon(home, daemon_env(home, api_url, backend, **{**SETTINGS, **env}), "run")
    daemons.append(daemon)
    address = daemon.expect(r"HTTP API and dashboard on (http://\S+/)", timeout=60)[1]
    daemon.ready(timeout=60)
    return daemon, address


def shots(page: Page, prompt: str) -> Locator:
    """The gallery's thumbnails of ``prompt`` (the prompt is their title)."""
    return page.locator(".gallery").get_by_title(prompt, exact=True)


# -- the gallery, the form, the live refresh --------------------------------------------------


def test_a_prompt_from_the_form_and_a_dropped_file_show_in_the_gallery(
    home: Path, daemons: list[Daemon], page: Page
) -> None:
    _, url = start(home, daemons)
    page.goto(url)
    expect(page.locator(".state .pill")).to_have_text("idle")

    page.fill("#prompt", "a red fox in the snow")
    page.select_option("#aspect_ratio", "16:9")
    page.select_option("#variants", "2")
    page.select_option("#quality", "high")
    page.fill("#name", "foxes")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator(".message.ok")).to_contain_text("queued")
    expect(shots(page, "a red fox in the snow")).to_have_count(2)
    made = sorted((home / "images" / "foxes").glob("*.png"))
    assert len(made) == 2
    sidecar = json.loads(made[0].with_suffix(".json").read_text("utf-8"))
    assert (sidecar["options"]["aspect_ratio"], sidecar["options"]["quality"]) == ("16:9", "high")

    # Live: what comes in meanwhile shows without a reload (the page's own state survives).
    page.evaluate("window.sameDocument = true")
    tricky = 'a <i>tiny</i> fox & "friends"'
    drop(home / "inbox", "more.txt", f"a calm lake at dawn\na lighthouse at dusk\n{tricky}\n")
    expect(shots(page, tricky)).to_have_count(1)  # user text shown as text
    expect(shots(page, "a calm lake at dawn")).to_have_count(1)
    expect(page.locator(".queue .processed dd")).to_have_text("2")
    expect(page.locator(".queue .images dd")).to_have_text("5")
    assert page.evaluate("window.sameDocument") is True
    assert page.locator(".gallery i").count() == 0

    # A click opens the full image and its sidecar.
    lake = shots(page, "a calm lake at dawn")
    lake.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-prompt")).to_have_text("a calm lake at dawn")
    expect(page.locator("#viewer-image")).to_have_attribute(
        "src", re.compile(r"/v1/images/.+\.png$")
    )
    expect(page.locator("#viewer-sidecar")).to_contain_text('"prompt": "a calm lake at dawn"')
    page.wait_for_function("() => document.querySelector('#viewer-image').naturalWidth === 64")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()


def test_thumbnails_are_made_once_and_served_small(
    home: Path, daemons: list[Daemon], page: Page
) -> None:
    _, url = start(home, daemons)
    picture = Image.new("RGB", (1024, 512), (200, 90, 30))
    (home / "images").mkdir(exist_ok=True)
    picture.save(home / "images" / "wide.png")
    page.goto(url)
    image = page.locator(".gallery img").first
    expect(image).to_have_attribute("src", re.compile(r"^/thumbnails/wide\.png\?v=\w+$"))
    page.wait_for_function("() => document.querySelector('.gallery img').naturalWidth === 256")
    [cached] = (home / ".thumbnails").iterdir()
    before = cached.stat()

    answer = page.request.get(f"{url}thumbnails/wide.png")
    assert answer.status == 200 and answer.headers["content-type"] == "image/webp"
    page.reload()
    page.wait_for_function("() => document.querySelector('.gallery img').naturalWidth === 256")
    after = cached.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list((home / ".thumbnails").iterdir()) == [cached]
    assert page.request.get(f"{url}thumbnails/nothing.png").status == 404


# -- failures ---------------------------------------------------------------------------------


def test_a_failed_job_shows_its_reason_and_retry_sends_it_back(
    home: Path, daemons: list[Daemon], page: Page
) -> None:
    daemon, url = start(home, daemons)
    job = {"prompt": "a fox on a wide screen", "aspect_ratio": "7:5"}
    drop(home / "inbox", "wide.json", json.dumps(job))
    daemon.expect(r"wide\.json moved to \S+/failed/")
    page.goto(url)  # (the live refresh has its own test: here, no need to wait for it)
    row = page.locator(".failure", has_text="wide.json")
    expect(row.locator(".reason")).to_contain_text("aspect_ratio '7:5' is not one of")
    expect(page.locator(".queue .failed dd")).to_have_text("1")

    # What the advice says: fix the input, then retry.
    [failed] = [p for p in (home / "failed").iterdir() if p.name.endswith("wide.json")]
    failed.write_text(json.dumps({**job, "aspect_ratio": "16:9"}), encoding="utf-8")
    row.get_by_role("button", name="Retry").click()
    expect(page.locator(".message.ok")).to_contain_text("back in the queue")
    expect(page.locator(".failure")).to_have_count(0)
    expect(shots(page, "a fox on a wide screen")).to_have_count(1)
    expect(page.locator(".queue .failed dd")).to_have_text("0")


def test_a_prompt_the_inbox_would_refuse_is_refused_in_the_page(
    home: Path, daemons: list[Daemon], page: Page
) -> None:
    _, url = start(home, daemons)
    page.goto(url)
    page.fill("#prompt", "a fox in a folder it may not have")
    page.fill("#name", "../outside")
    with page.expect_response(lambda r: r.url.endswith("/submit")) as answer:
        page.get_by_role("button", name="Generate").click()
    assert answer.value.status == 422
    expect(page.locator(".message.error")).to_contain_text("'../outside' is not allowed")
    expect(page.locator("#prompt")).to_have_value("a fox in a folder it may not have")
    assert not list((home / "inbox").iterdir())


def test_a_refused_key_shows_a_red_banner_with_what_to_do(
    home: Path, daemons: list[Daemon], page: Page
) -> None:
    with ImagesStandIn(latency=0.05, api_key=KEY).start() as api:
        (home / ".env").write_text(f"OPENAI_API_KEY={WRONG_KEY}\n", encoding="utf-8")
        daemon, url = start(
            home,
            daemons,
            "openai",
            api_url=api.base_url,
            OPENAI_API_KEY=WRONG_KEY,
            SORA_PAUSE_SECONDS="1",
        )
        drop(home / "inbox", "p.txt", "a harbour at night\n")
        daemon.expect("queue paused: CredentialsRefused")
        page.goto(url)
        banner = page.locator(".banner")
        expect(banner).to_contain_text("The queue is paused: CredentialsRefused")
        expect(banner).to_contain_text("Incorrect API key provided")
        expect(banner).to_contain_text(f"set OPENAI_API_KEY in {home / '.env'}")
        expect(page.locator(".state .pill")).to_have_text("paused")
        assert WRONG_KEY not in page.content() and WRONG_KEY[-12:] not in page.content()

        (home / ".env").write_text(f"OPENAI_API_KEY={KEY}\n", encoding="utf-8")
        expect(banner).to_have_count(0)  # by itself, as the queue resumes
        expect(shots(page, "a harbour at night")).to_have_count(1)


# -- the token --------------------------------------------------------------------------------


def test_with_a_token_the_page_asks_for_it_once_and_forms_need_their_own(
    home: Path, daemons: list[Daemon], page: Page, browser: Browser
) -> None:
    _, url = start(home, daemons, SORA_API_TOKEN=TOKEN)
    page.goto(url)
    expect(page).to_have_url(f"{url}login")

    page.fill("#token", "not-the-token")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 401
    expect(page.locator(".message.error")).to_contain_text("not the token")
    assert not page.context.cookies()

    page.fill("#token", TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(url)
    expect(page.locator(".state .pill")).to_have_text("idle")
    [cookie] = page.context.cookies()
    assert cookie["name"] == "sora_session" and cookie["value"] != TOKEN
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/" and cookie["secure"] is False  # plain http on loopback

    # The cookie alone does not make a form: without the page's token, refused.
    form: dict[str, str | float | bool] = {"prompt": "a forged fox"}
    assert page.request.post(f"{url}submit", form=form, max_redirects=0).status == 403
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    sent = page.request.post(f"{url}submit", form={**form, "csrf": csrf}, max_redirects=0)
    assert sent.status == 303
    assert len(list((home / "records").glob("job_*.json"))) == 1

    stranger = browser.new_context()
    try:
        assert stranger.request.get(f"{url}fragments/live").status == 401
        assert stranger.request.get(f"{url}thumbnails/x.png").status == 401
        assert stranger.request.get(f"{url}static/dashboard.css").status == 200
    finally:
        stranger.close()


# -- thumbnails, in this process --------------------------------------------------------------


def test_a_thumbnail_is_made_once_and_again_for_a_replaced_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, cache = tmp_path / "images", tmp_path / "thumbs"
    (images / "alice").mkdir(parents=True)
    Image.new("RGBA", (600, 900), (10, 20, 30, 128)).save(images / "alice" / "a.png")
    opened: list[Path] = []
    real_open = Image.open

    def counting_open(path: Path) -> Image.Image:
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(Image, "open", counting_open)  # the module thumbnails reads with
    maker = Thumbnails(images, cache)
    first = maker.get("alice/a.png")
    assert first is not None and len(opened) == 1
    assert maker.get("alice/a.png") == first and len(opened) == 1  # from the cache
    with real_open(first[0]) as small:
        assert small.format == "WEBP" and small.size == (171, 256) and small.mode == "RGBA"

    Image.new("RGB", (300, 300), (250, 0, 0)).save(images / "alice" / "a.png")
    second = maker.get("alice/a.png")
    assert second is not None and second[0] != first[0] and len(opened) == 2

    (tmp_path / "secret.png").write_bytes((images / "alice" / "a.png").read_bytes())
    (images / "link.png").symlink_to(tmp_path / "secret.png")
    (images / "notes.txt").write_text("not an image", encoding="utf-8")
    (images / "broken.png").write_bytes(b"not a png")
    for refused in ("link.png", "../secret.png", "notes.txt", "broken.png", "", "alice"):
        assert maker.get(refused) is None, refused
    assert len(opened) == 3  # only broken.png was opened, and it made nothing

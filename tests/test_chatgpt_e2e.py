"""The chatgpt-web backend end to end: real daemon processes, real Chromium, the ChatGPT
stand-in. Scenarios share a daemon where they can: each browser start costs seconds."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from chatgpt_standin import StandIn
from sora_driver.chatgpt.driver import ChatGptDriver
from sora_driver.chatgpt.settings import read_settings
from sora_driver.chatgpt.wording import FIRMLY
from sora_watcher.backends.base import JobOptions
from standin_kit import process
from tests.conftest import TEST_SETTINGS, Daemon, drop

pytestmark = pytest.mark.e2e

PROMPTS = [
    "A lighthouse on a basalt cliff at dawn",
    "A watercolor map of an imaginary archipelago",
    "A hummingbird at a neon-blue flower, macro",
]
PREFIX = "Generate an image:"


@pytest.fixture(scope="module")
def chatgpt() -> Iterator[StandIn]:
    with StandIn(delay=0.6).start() as server:
        yield server


@pytest.fixture
def site(chatgpt: StandIn) -> Iterator[StandIn]:
    chatgpt.clear_scenarios()
    chatgpt.page_variant = {}
    yield chatgpt
    chatgpt.clear_scenarios()
    chatgpt.page_variant = {}


@pytest.fixture
def site_session(site: StandIn) -> dict[str, Any]:
    """The session conftest's `home` holds: the ChatGPT stand-in's."""
    return site.storage_state()


def start(home: Path, site: StandIn, daemons: list[Daemon], *args: str, **env: str) -> Daemon:
    settings = {**TEST_SETTINGS, "SORA_CHATGPT_URL": site.base_url, "SORA_MIN_INTERVAL": "0"}
    environ = process.daemon_env(home, None, "chatgpt-web", **{**settings, **env})
    daemon = Daemon(home, environ, *(args or ("run",)))
    daemons.append(daemon)
    return daemon


def sends_of(site: StandIn, words: str) -> list[dict[str, object]]:
    return [s for s in site.log()["sends"] if words in str(s["prompt"])]


def journals(home: Path) -> str:
    return "".join(p.read_text("utf-8") for p in (home / "processing").rglob("*.state.json"))


def until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.05)
    return True


def error_report(home: Path, name: str) -> str:
    return (home / "failed" / f"{name}.error.txt").read_text(encoding="utf-8")


def test_images_limits_refusals_withdrawals_and_the_interval(
    home: Path, site: StandIn, daemons: list[Daemon]
) -> None:
    daemon = start(home, site, daemons, SORA_MIN_INTERVAL="2")
    daemon.expect(r"watching ")

    # three prompts, three full-size images, never the preview
    drop(home / "inbox", "prompt.txt", "\n".join(PROMPTS) + "\n")
    daemon.expect(r"prompt\.txt: 3 image\(s\), moved to .*processed", timeout=90)
    images = sorted((home / "images").glob("*.png"))
    assert len(images) == 3
    for image in images:
        with Image.open(image) as picture:
            assert picture.size == (1024, 1024)  # the stand-in's previews are 256 px wide
        sidecar = json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))
        chat = sidecar["chatgpt"]
        assert sidecar["task_id"] == chat["conversation_id"]
        assert chat["asked"] == f"{PREFIX} {sidecar['prompt']}"
        assert chat["asked_with"] == "the Create image tool"
        assert chat["images"][0]["file_id"].startswith("file_")
        assert (chat["images"][0]["width"], chat["images"][0]["height"]) == (1024, 1024)
        assert "sig=" not in json.dumps(sidecar)
    sends = [s for s in site.log()["sends"] if any(p in str(s["prompt"]) for p in PROMPTS)]
    assert [s["hints"] for s in sends] == [["picture_v2"]] * 3
    times = [float(str(s["at"])) for s in sends]
    assert all(later - earlier >= 1.9 for earlier, later in itertools.pairwise(times))

    # a refusal: failed/, with the site's words
    site.scenario("refusal")
    drop(home / "inbox", "refused.txt", "A forbidden thing\n")
    daemon.expect(r"refused\.txt: 1 prompt\(s\) failed, moved to .*failed", timeout=60)
    assert "I can't assist with that request." in error_report(home, "refused.txt")

    # an image withdrawn after it came: failed/, and no file kept
    site.scenario("withdrawn", after=0.3)
    drop(home / "inbox", "withdrawn.txt", "A thing withdrawn later\n")
    daemon.expect(r"withdrawn\.txt: 1 prompt\(s\) failed, moved to .*failed", timeout=60)
    assert "ImageWithdrawn" in error_report(home, "withdrawn.txt")
    assert len(list((home / "images").glob("*.png"))) == 3

    # the plan's limit: the queue pauses until the stated reset, then the image comes
    site.scenario("limit", words="in 3 seconds")
    drop(home / "inbox", "limited.txt", "A red kite over a hill\n")
    daemon.expect(r"queue paused: RateLimited \(You've hit the Plus plan limit", timeout=60)
    daemon.expect(r"queue resumed", timeout=30)
    daemon.expect(r"limited\.txt: 1 image\(s\), moved to .*processed", timeout=60)
    assert len(sends_of(site, "A red kite over a hill")) == 2  # the limit's, then the image's

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_a_kill_while_the_image_is_made_does_not_send_it_again(
    home: Path, site: StandIn, daemons: list[Daemon]
) -> None:
    site.scenario("slow_image", seconds=4)
    made_before = site.log()["images_made"]
    prompt = "A paper boat on a puddle, kill test"  # its own: the stand-in is shared
    drop(home / "inbox", "prompt.txt", prompt + "\n")
    first = start(home, site, daemons)
    conversation = first.expect(r"asked in conversation (\S+) ")[1]
    # the journal has the conversation's id before the image exists (polled: no event for it)
    assert until(lambda: conversation in journals(home)), journals(home)
    assert site.log()["images_made"] == made_before  # still being made
    first.signal_group(signal.SIGKILL)
    first.wait()

    again = start(home, site, daemons, "once")
    assert again.wait(timeout=90) == 0, "\n".join(again.output)
    assert len(list((home / "images").glob("*.png"))) == 1
    assert len(sends_of(site, prompt)) == 1


def test_page_variants_and_a_renamed_composer_fixed_by_a_profile(
    home: Path, site: StandIn, daemons: list[Daemon]
) -> None:
    # the older textarea composer, the 2026 send button, no "+" menu: asked in words
    site.page_variant = {"composer": "textarea", "send": "2026", "plus_menu": False}
    daemon = start(home, site, daemons, SORA_MAX_RETRIES="0", SORA_PAGE_TIMEOUT="3")
    older, renamed = "A tram in the snow, older page", "A fox in the rain, renamed composer"
    drop(home / "inbox", "older.txt", older + "\n")
    daemon.expect(r"older\.txt: 1 image\(s\), moved to .*processed", timeout=60)
    [send] = sends_of(site, older)
    assert send["hints"] == []

    # a composer no candidate knows: the error names the element and the candidates
    site.page_variant = {"composer": "renamed"}
    drop(home / "inbox", "renamed.txt", renamed + "\n")
    daemon.expect(r"renamed\.txt: 1 prompt\(s\) failed, moved to .*failed", timeout=60)
    report = error_report(home, "renamed.txt")
    assert "composer: no visible match" in report and "#prompt-textarea" in report
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0

    profile = home / "chatgpt-selectors.json"
    profile.write_text(json.dumps({"composer": [{"css": "[data-testid='chat-composer-input']"}]}))
    drop(home / "inbox", "renamed.txt", renamed + "\n")
    fixed = start(home, site, daemons, "once", SORA_CHATGPT_SELECTORS=str(profile))
    assert fixed.wait(timeout=90) == 0, "\n".join(fixed.output)
    assert len(list((home / "images").glob("*.png"))) == 2


def test_an_answer_in_text_is_asked_again_firmly_and_the_image_comes(
    home: Path, site: StandIn
) -> None:
    """The driver in this process, its text-only grace lowered (30 s on the real site)."""
    environ = {"SORA_SESSION_FILE": "session.json", "SORA_MIN_INTERVAL": "0.5"}
    chat = read_settings({}, {**environ, "SORA_CHATGPT_URL": site.base_url}, home, debug=False)
    driver = ChatGptDriver(chat, timeout=60, stop=threading.Event(), text_only_grace=0.5)
    prompt = "A heron in the reeds, text first"
    try:
        driver.open()
        site.scenario("text_only")
        conversation = driver.submit(prompt, JobOptions())
        generation = driver.collect(conversation, JobOptions())
    finally:
        driver.close()
    assert [(i.width, i.height) for i in generation.images] == [(1024, 1024)]
    first, firm = sends_of(site, prompt)
    assert str(firm["prompt"]).startswith(FIRMLY) and firm["conversation_id"] == conversation
    assert float(str(firm["at"])) - float(str(first["at"])) >= 0.45  # the interval holds
    # the interval survives a restart: the last send's time is beside the session
    assert (home / "session.json.last-send").is_file()


def test_a_failed_generation_a_token_cloudflare_a_logout_a_ban_and_a_429(
    home: Path, site: StandIn, daemons: list[Daemon]
) -> None:
    """The rest of the site's failures, one daemon, each as its user notices it. Scenarios
    met by any request (cloudflare, logged_out, suspended) stay armed until cleared: the page
    of the previous image still polls for a while and would take a scenario armed for once."""
    daemon = start(home, site, daemons, SORA_PAUSE_SECONDS="1", SORA_PAGE_TIMEOUT="3")
    daemon.expect(r"watching ")
    inbox, waiting = home / "inbox", home / "processing" / "w1"

    def made(prompt: str) -> dict[str, Any]:
        """The sidecar of the one image made for ``prompt``."""
        sidecars: list[dict[str, Any]] = [
            json.loads(path.read_text(encoding="utf-8"))
            for path in (home / "images").glob("*.json")
        ]
        [sidecar] = [s for s in sidecars if s["prompt"] == prompt]
        return sidecar

    # "Image generation failed": tried again, asked again in the same conversation
    site.scenario("gen_failed")
    failed_once = "A glass of water on a windowsill, failed once"
    drop(inbox, "failed_once.txt", failed_once + "\n")
    daemon.expect(r"GenerationFailed \(conversation \S+: Image generation failed.*: try 2/4")
    daemon.expect(r"the image generation failed before; asking again")
    daemon.expect(r"failed_once\.txt: 1 image\(s\), moved to .*processed", timeout=60)
    first, again = sends_of(site, failed_once)
    assert first["answer"] == again["answer"] == "image"
    assert again["prompt"] == first["prompt"] == f"{PREFIX} {failed_once}"
    assert again["conversation_id"] == first["conversation_id"] == made(failed_once)["task_id"]

    # an expired token, once: the page's script reads the session again and retries its call
    # (the send comes after its sentinel call, which takes the 401): nothing shows
    site.scenario("token_expired")
    expired = "A brass compass on a chart, token expired"
    drop(inbox, "expired.txt", expired + "\n")
    daemon.expect(r"expired\.txt: 1 image\(s\), moved to .*processed", timeout=60)
    assert "token_expired" not in site.armed_scenarios()
    [send] = sends_of(site, expired)
    assert send["conversation_id"] == made(expired)["task_id"]
    assert not any("HTTP 401" in line or "reloading" in line for line in daemon.output)

    # Cloudflare's challenge: the queue pauses, no input is blamed, then the image comes
    site.scenario("cloudflare", count=None)
    challenged = "A snow owl on a fence post, challenged"
    drop(inbox, "challenged.txt", challenged + "\n")
    daemon.expect(r"queue paused: CloudflareChallenge \(.*'Just a moment\.\.\.'")
    assert (waiting / "challenged.txt").exists()
    site.clear_scenarios()
    daemon.expect(r"queue resumed")
    daemon.expect(r"challenged\.txt: 1 image\(s\), moved to .*processed", timeout=60)
    assert len(sends_of(site, challenged)) == 1

    # logged out while the image is made: paused until session.json is replaced, then the
    # same conversation is followed (not asked again) and its image comes
    site.scenario("slow_image", seconds=8)  # time to arm the logout: the pause holds the job
    logged_out = "A kettle on a camp stove, logged out"
    drop(inbox, "logged_out.txt", logged_out + "\n")
    conversation = daemon.expect(r"asked in conversation (\S+) ")[1]
    site.scenario("logged_out", count=None)
    daemon.expect(r"queue paused: SessionExpired")
    daemon.expect(r"log in to ChatGPT by hand and save a new .*session\.json")
    assert (waiting / "logged_out.txt").exists(), "the input is not blamed"
    site.clear_scenarios()
    fresh = home / ".session.json.new"
    fresh.write_text(json.dumps(site.storage_state()), encoding="utf-8")
    fresh.chmod(0o600)
    fresh.replace(home / "session.json")
    daemon.expect(r"ChatGPT session valid")
    daemon.expect(r"logged_out\.txt: 1 image\(s\), moved to .*processed", timeout=60)
    [send] = sends_of(site, logged_out)
    assert send["conversation_id"] == conversation == made(logged_out)["task_id"]

    # a deactivated account: the queue pauses, nothing is sent and no input is blamed; then,
    # the account back, a bare 429: the hour the daemon waits when the site states no reset
    # (a stop during it is clean, and the input stays to be sent after the restart)
    site.scenario("suspended", count=None)
    locked = "A row of beach huts, account suspended then too many requests"
    drop(inbox, "locked.txt", locked + "\n")
    daemon.expect(r"queue paused: AccessDenied \(HTTP 403 .*deactivated\. \[account_deactivated\]")
    assert not any("no request after" in line for line in daemon.output)  # at once, not late
    site.clear_scenarios()
    site.scenario("http_429")
    assert (waiting / "locked.txt").exists()
    daemon.expect(r"queue paused: RateLimited \(HTTP 429 on POST /backend-api/f/conversation")
    daemon.expect(r"resuming in 3600s")
    assert not sends_of(site, locked)
    assert [r["status"] for r in site.log()["refused"] if locked in str(r["prompt"])] == [429]
    assert (waiting / "locked.txt").exists()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert not list((home / "failed").iterdir())
    assert len(list((home / "images").glob("*.png"))) == 4

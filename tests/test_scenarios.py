"""Every failure the real site is known to show, and every page variant, end to end.

Each test switches a scenario on in the stand-in, runs the real daemon with real Chromium, and
checks what the user sees: the error class in the log, where the input ends up, and how many
times the prompt was submitted (a generation costs credits).
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sora_driver.web import DriverConfig, SoraWebDriver
from sora_standin import StandIn
from sora_watcher.backends.base import JobOptions
from tests.conftest import Daemon, daemon_env, drop
from tests.test_e2e import FAILURE_LINE, images_in, log_lines, run_once

pytestmark = pytest.mark.e2e
PROMPT = "A paper boat on a rain puddle"


@pytest.fixture
def clean_standin(standin: StandIn) -> Any:
    standin.clear_scenarios()
    standin.page_variant = {}
    yield standin
    standin.clear_scenarios()
    standin.page_variant = {}


def submissions_of(standin: StandIn, prompt: str) -> int:
    return sum(s["prompt"] == prompt for s in standin.submissions)


def failures(home: Path) -> list[re.Match[str]]:
    return [m for line in log_lines(home) if (m := FAILURE_LINE.match(line))]


def run_prompt(home: Path, standin: StandIn, prompt: str, **env: str) -> Daemon:
    drop(home / "inbox", "prompt.txt", prompt + "\n")
    return run_once(home, standin, "once", **env)


@pytest.mark.parametrize(
    "variant",
    [
        {"composer": "contenteditable"},
        {"button": "generate"},
        {"button": "icon"},
        {"button": "none"},
        {"popup": True},
        {"popup": "announcement"},
        {"settings": False},
        {"composer": "contenteditable", "button": "icon", "popup": True},
    ],
    ids=lambda v: "-".join(f"{k}={v[k]}" for k in v),
)
def test_page_variants_still_give_the_image(
    home: Path, clean_standin: StandIn, variant: dict[str, Any]
) -> None:
    clean_standin.page_variant = variant
    prompt = f"{PROMPT} {json.dumps(variant)}"
    daemon = run_prompt(home, clean_standin, prompt)
    assert daemon.process.returncode == 0, "\n".join(daemon.output)
    assert len(images_in(home)) == 1
    assert submissions_of(clean_standin, prompt) == 1


def test_a_composer_that_changed_since_it_was_found_is_found_again(
    home: Path, clean_standin: StandIn
) -> None:
    # The composer found for the first prompt is used again for the next ones. Here the page
    # re-renders it with a new placeholder in between, which its first candidate no longer
    # matches: the driver must look again (the profile's textarea candidate), not fail.
    driver = SoraWebDriver(DriverConfig(clean_standin.base_url, home / "session.json"))
    driver.open()
    try:
        driver.submit(f"{PROMPT} (before the change)", JobOptions())
        page = driver.site.page
        assert page is not None
        page.evaluate("document.querySelector('textarea').placeholder = 'Your idea'")
        driver.submit(f"{PROMPT} (after the change)", JobOptions())
    finally:
        driver.close()
    assert submissions_of(clean_standin, f"{PROMPT} (after the change)") == 1


def test_aspect_ratio_and_variations_from_a_json_job(home: Path, clean_standin: StandIn) -> None:
    job = {"prompt": f"{PROMPT} wide", "aspect_ratio": "16:9", "variants": 2, "name": "wide"}
    drop(home / "inbox", "job.json", json.dumps(job))
    daemon = run_once(home, clean_standin, "once")
    assert daemon.process.returncode == 0, "\n".join(daemon.output)
    images = sorted((home / "images" / "wide").glob("*.png"))
    assert len(images) == 2, "every variation is saved"
    for image in images:
        with Image.open(image) as picture:
            assert picture.size == (1536, 1024)  # the stand-in's landscape full size
    [sent] = [s for s in clean_standin.submissions if s["prompt"] == job["prompt"]]
    assert (sent["n_variants"], sent["width"], sent["height"]) == (2, 854, 480)


@pytest.mark.parametrize(
    ("scenario", "error_class", "words"),
    [
        ("moderation", "ContentRejected", "terminal"),
        ("unsafe_output", "ContentRejected", "unsafe_generations=1"),
        ("unable_to_create", "ContentRejected", "content policies"),
        ("task_failed", "TaskFailed", "Internal error while generating."),
        ("cancelled", "TaskFailed", "status=cancelled"),
    ],
)
def test_permanent_failures_go_to_failed_at_once(
    home: Path, clean_standin: StandIn, scenario: str, error_class: str, words: str
) -> None:
    clean_standin.scenario(scenario)
    prompt = f"{PROMPT} ({scenario})"
    daemon = run_prompt(home, clean_standin, prompt, SORA_MAX_RETRIES="3")
    assert daemon.process.returncode != 0
    [failure] = failures(home)
    assert failure["error"] == error_class
    assert words in failure["detail"]
    report = (home / "failed" / "prompt.txt.error.txt").read_text("utf-8")
    assert f"line 1: {error_class}" in report and "reword it" in report
    assert not any("again in" in line for line in daemon.output), "no retry of a refusal"
    assert submissions_of(clean_standin, prompt) <= 1


@pytest.mark.parametrize(
    ("scenario", "count", "warning"),
    [
        ("heavy_load", 1, "Overloaded"),
        ("truncated_image", 1, None),  # the direct download: asked again through the browser
        ("truncated_image", 2, "DownloadFailed"),  # both
        ("token_expired", 1, None),  # the page asks for a new token and sends again itself
    ],
)
def test_transient_failures_are_retried_without_paying_twice(
    home: Path, clean_standin: StandIn, scenario: str, count: int, warning: str | None
) -> None:
    clean_standin.scenario(scenario, count=count)
    prompt = f"{PROMPT} ({scenario} x{count})"
    daemon = run_prompt(home, clean_standin, prompt)
    assert daemon.process.returncode == 0, "\n".join(daemon.output)
    retries = [line for line in daemon.output if "again in" in line]
    if warning is None:
        assert retries == []
    else:
        assert retries and warning in retries[0], daemon.output
    assert len(images_in(home)) == 1
    assert submissions_of(clean_standin, prompt) == 1  # refused once, or followed again


def test_a_stale_token_is_not_taken_for_an_expired_session(
    home: Path, clean_standin: StandIn
) -> None:
    clean_standin.scenario("token_expired", count=None)  # every /backend call: 401
    daemon = run_prompt(home, clean_standin, f"{PROMPT} (stale)", SORA_MAX_RETRIES="1")
    assert daemon.process.returncode != 0
    [failure] = failures(home)
    assert failure["error"] == "PageError"
    assert (
        "token_expired" in failure["detail"] and "the session is still valid" in failure["detail"]
    )
    assert not any("queue paused" in line for line in daemon.output)
    assert (home / "failed" / "prompt.txt").exists()


def test_a_stalled_task_times_out_and_is_followed_not_resubmitted(
    home: Path, clean_standin: StandIn
) -> None:
    clean_standin.scenario("stalled")
    prompt = f"{PROMPT} (stalled)"
    daemon = run_prompt(home, clean_standin, prompt, SORA_TIMEOUT="2", SORA_MAX_RETRIES="1")
    assert daemon.process.returncode != 0
    [failure] = failures(home)
    assert failure["error"] == "GenerationTimeout"
    assert "gave up after 2 tries" in failure["detail"]
    assert submissions_of(clean_standin, prompt) == 1


@pytest.mark.parametrize("scenario", ["slow_cdn", "webp_source", "no_polling"])
def test_slow_or_unusual_answers_still_give_a_full_size_png(
    home: Path, clean_standin: StandIn, scenario: str
) -> None:
    clean_standin.scenario(scenario, **({"seconds": 2} if scenario == "slow_cdn" else {}))
    daemon = run_prompt(home, clean_standin, f"{PROMPT} ({scenario})")
    assert daemon.process.returncode == 0, "\n".join(daemon.output)
    [image] = images_in(home)
    with Image.open(image) as picture:
        assert (picture.format, picture.size) == ("PNG", (1024, 1024))
    sidecar = json.loads(image.with_suffix(".json").read_text("utf-8"))
    assert sidecar["source_format"] == ("WEBP" if scenario == "webp_source" else "PNG")


def test_an_image_host_that_wants_the_browsers_cookies_gets_them(
    home: Path, clean_standin: StandIn
) -> None:
    # Images are fetched without the browser (their URL is signed); a host that refuses that
    # is asked through the browser, with its cookies, for this image and every later one.
    clean_standin.scenario("cdn_needs_cookies", count=3)
    prompts = [f"{PROMPT} (host wants cookies {n})" for n in (1, 2)]
    drop(home / "inbox", "prompt.txt", "\n".join(prompts) + "\n")
    daemon = run_once(home, clean_standin, "once")
    assert daemon.process.returncode == 0, "\n".join(daemon.output)
    assert len(images_in(home)) == 2 and failures(home) == []
    refused = [line for line in daemon.output if "refuses downloads outside the browser" in line]
    assert len(refused) == 1, daemon.output
    assert clean_standin.armed_scenarios()["cdn_needs_cookies"]["remaining"] == 2


def run_daemon(home: Path, standin: StandIn, daemons: list[Daemon], **env: str) -> Daemon:
    daemon = Daemon(home, daemon_env(home, standin, SORA_PAUSE_SECONDS="1", **env), "run")
    daemons.append(daemon)
    return daemon


def stop(daemon: Daemon) -> None:
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_rate_limit_pauses_until_its_reset_then_goes_on(
    home: Path, clean_standin: StandIn, daemons: list[Daemon]
) -> None:
    clean_standin.scenario("rate_limit", resets_in=6)
    daemon = run_daemon(home, clean_standin, daemons)
    daemon.expect("watching")
    drop(home / "inbox", "prompt.txt", f"{PROMPT} (rate limit)\n")
    daemon.expect(r"queue paused: RateLimited \(HTTP 429 .*rate_limit_exhausted")
    daemon.expect(r"resuming in 6s")  # the reset time Sora gave
    daemon.expect(r"prompt\.txt: 1 image\(s\), moved to .*processed")
    assert not list((home / "failed").iterdir())
    stop(daemon)


def test_cloudflare_pauses_the_queue_and_blames_no_input(
    home: Path, clean_standin: StandIn, daemons: list[Daemon]
) -> None:
    clean_standin.scenario("cloudflare", count=2)
    daemon = run_daemon(home, clean_standin, daemons)
    daemon.expect(r"CloudflareChallenge at start-up .*Just a moment")
    drop(home / "inbox", "prompt.txt", f"{PROMPT} (cloudflare)\n")
    daemon.expect(r"queue paused: CloudflareChallenge")
    daemon.expect(r"prompt\.txt: 1 image\(s\), moved to .*processed")
    assert not list((home / "failed").iterdir())
    stop(daemon)


def test_an_expired_session_pauses_until_session_json_is_replaced(
    home: Path, clean_standin: StandIn, daemons: list[Daemon]
) -> None:
    clean_standin.revoke_sessions()
    daemon = run_daemon(home, clean_standin, daemons)
    daemon.expect(r"SessionExpired at start-up .*answered 'null'")
    drop(home / "inbox", "prompt.txt", f"{PROMPT} (session)\n")
    daemon.expect(r"queue paused: SessionExpired")
    daemon.expect(r"log in to Sora by hand and save a new .*session\.json")
    assert (home / "processing" / "w1" / "prompt.txt").exists(), "the input is not blamed"
    # the user logs in again and saves a new session: the queue resumes by itself
    fresh = home / ".session.json.new"
    fresh.write_text(json.dumps(clean_standin.storage_state()), encoding="utf-8")
    fresh.replace(home / "session.json")
    daemon.expect(r"Sora session valid")
    daemon.expect(r"prompt\.txt: 1 image\(s\), moved to .*processed")
    stop(daemon)


def test_phone_verification_stops_once_without_blaming_the_input(
    home: Path, clean_standin: StandIn
) -> None:
    clean_standin.scenario("phone_verification", count=None)
    daemon = run_prompt(home, clean_standin, f"{PROMPT} (phone)")
    assert daemon.process.returncode != 0
    assert any("queue paused: PhoneVerificationRequired" in line for line in daemon.output)
    assert (home / "processing" / "w1" / "prompt.txt").exists()
    assert not list((home / "failed").iterdir())


def test_a_changed_page_names_the_element_and_the_candidates(
    home: Path, clean_standin: StandIn
) -> None:
    (home / "selectors.json").write_text(
        json.dumps({"composer": [{"placeholder": "^Type here"}, {"css": "#no-such-box"}]}),
        encoding="utf-8",
    )
    daemon = run_prompt(
        home,
        clean_standin,
        f"{PROMPT} (changed page)",
        SORA_SELECTORS="selectors.json",
        SORA_MAX_RETRIES="0",
        SORA_PAGE_TIMEOUT="3",
    )
    assert daemon.process.returncode != 0
    [failure] = failures(home)
    assert failure["error"] == "ElementNotFound"
    assert "composer: no visible match" in failure["detail"] and "after 3s" in failure["detail"]
    assert "placeholder='^Type here'; css='#no-such-box'" in failure["detail"]
    capture = re.search(r"capture: (\S+\.png), (\S+\.html)", failure["detail"])
    assert capture and Path(capture[1]).is_file() and Path(capture[2]).is_file()


def test_a_selector_profile_override_is_used(home: Path, clean_standin: StandIn) -> None:
    clean_standin.page_variant = {"composer": "contenteditable"}
    (home / "selectors.json").write_text(
        json.dumps({"composer": [{"css": "div#prompt[contenteditable]"}]}), encoding="utf-8"
    )
    daemon = run_prompt(
        home, clean_standin, f"{PROMPT} (override)", SORA_SELECTORS="selectors.json"
    )
    assert daemon.process.returncode == 0, "\n".join(daemon.output)


def test_debug_mode_logs_each_step_with_a_screenshot(home: Path, clean_standin: StandIn) -> None:
    daemon = run_prompt(home, clean_standin, f"{PROMPT} (debug)", SORA_DEBUG="true")
    assert daemon.process.returncode == 0, "\n".join(daemon.output)
    steps = [line for line in daemon.output if re.search(r"DEBUG +step \d+: ", line)]
    assert [re.search(r"step \d+: (\w+)", s)[1] for s in steps] == [  # type: ignore[index]
        "open",
        "loaded",
        "options",
        "typed",
        "clicked",
    ]
    shots = sorted(p.name for p in (home / "debug_screenshots").glob("*_step*.png"))
    assert len(shots) == 4 and shots[-1].endswith("_clicked.png")  # "open" has no page yet

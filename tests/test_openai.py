"""The openai backend end to end: the real daemon process, the real ``openai`` package, the
local stand-in of the Images API, real folders and real signals."""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from openai_standin import ImagesStandIn
from standin_kit.process import daemon_env, run_watcher
from tests.conftest import Daemon, drop

pytestmark = pytest.mark.e2e
KEY = "sk-standin-e2e-0123456789abcdefSECRET"
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def api_server() -> Iterator[ImagesStandIn]:
    with ImagesStandIn(latency=0.2, api_key=KEY).start() as server:
        yield server


@pytest.fixture
def api(api_server: ImagesStandIn) -> Iterator[ImagesStandIn]:
    api_server.clear()
    api_server.reset_calls()
    api_server.latency, api_server.max_in_flight = 0.2, 16
    yield api_server
    api_server.clear()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    return tmp_path


# What every daemon of these tests runs with unless its test says otherwise.
OPENAI_SETTINGS = {
    "OPENAI_API_KEY": KEY,
    "SORA_RETRY_DELAY": "0.2",
    "SORA_PAUSE_SECONDS": "1",
    "SORA_WORKER_ID": "w1",
    "SORA_SETTLE_SECONDS": "0.2",
}


def openai_env(home: Path, api: ImagesStandIn, **extra: str) -> dict[str, str]:
    return daemon_env(home, api.base_url, "openai", **{**OPENAI_SETTINGS, **extra})


def once(home: Path, api: ImagesStandIn, **extra: str) -> tuple[int, str]:
    done = run_watcher(home, openai_env(home, api, **extra), "once", timeout=120)
    return done.returncode, done.stdout + done.stderr


def images(home: Path, folder: str = "") -> list[Path]:
    return sorted((home / "images" / folder).glob("*.png"))


def sidecar(image: Path) -> dict[str, object]:
    return dict(json.loads(image.with_suffix(".json").read_text("utf-8")))


def everything_written(home: Path, output: str) -> str:
    """The output, the logs, and every text file the daemon left, as one string."""
    texts = [output]
    for path in home.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json", ".txt", ".png"):
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def test_a_prompt_file_gives_one_tagged_image_per_line(home: Path, api: ImagesStandIn) -> None:
    lines = ["a red fox in the snow", "Éclat doré sur la mer, 夕焼け", "a lighthouse at dusk"]
    drop(home / "inbox", "prompt.txt", "\n".join(lines) + "\n")
    code, output = once(home, api)
    assert code == 0, output
    made = images(home)
    assert len(made) == 3
    assert (home / "processed" / "prompt.txt").exists()
    assert output.count("Statut : SUCCÈS") == 3
    prompts = set()
    for image in made:
        with Image.open(image) as picture:
            assert picture.size == (1024, 1024)
            text = dict(picture.text)  # type: ignore[attr-defined]
        record = json.loads(text["sora-watcher"])
        prompts.add(record["prompt"])
        assert text["parameters"].startswith(record["prompt"] + "\n")
        assert "Model: gpt-image-2" in text["parameters"]
        data = sidecar(image)
        assert data["backend"] == "openai" and data["model"] == "gpt-image-2"
        assert str(data["request_id"]).startswith("req_")
        assert isinstance(data["usage"], dict) and data["usage"]["total_tokens"] > 0
        assert {k: v for k, v in data.items() if k not in ("image", "bytes")} == record
    assert prompts == set(lines)  # accents and other scripts intact, read back from the PNG
    assert [c.size for c in api.calls] == ["1024x1024"] * 3


def test_a_json_job_with_variants_and_16_9(home: Path, api: ImagesStandIn) -> None:
    job = {"prompt": "a wide valley", "variants": 2, "aspect_ratio": "16:9", "quality": "low"}
    drop(home / "inbox", "job.json", json.dumps(job))
    code, output = once(home, api)
    assert code == 0, output
    made = images(home)
    assert len(made) == 2
    for image in made:
        with Image.open(image) as picture:
            assert picture.size == (1536, 864)
    [call] = api.calls
    assert (call.n, call.size, call.quality) == (2, "1536x864", "low")


def test_csv_rows_with_options_and_a_bad_row_that_costs_nothing(
    home: Path, api: ImagesStandIn
) -> None:
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerows(
        [
            ["prompt", "size", "quality", "model"],
            ["a tall tower", "1024x1536", "high", ""],
            ["a bad size", "1000x1000", "", ""],
            ["a flare model", "", "", "gpt-image-2.5-flare"],
        ]
    )
    drop(home / "inbox", "rows.csv", rows.getvalue())
    code, output = once(home, api)
    assert code == 1  # one row failed
    assert sorted(c.prompt or "" for c in api.calls) == ["a flare model", "a tall tower"]
    report = (home / "failed" / "rows.csv.error.txt").read_text("utf-8")
    assert "size '1000x1000': both sides must be multiples of 16" in report
    assert 'Prompt utilisé : "a bad size" Statut : ÉCHEC Erreur : InputError' in output
    assert len(images(home)) == 2


def test_a_natal_chart_gives_the_users_image_and_result(home: Path, api: ImagesStandIn) -> None:
    shutil.copyfile(DATA / "theme_alice.json", home / "inbox" / ".theme.tmp")
    (home / "inbox" / ".theme.tmp").rename(home / "inbox" / "theme_alice.json")
    code, output = once(home, api)
    assert code == 0, output
    [image] = images(home, "alice")
    result = json.loads((home / "images" / "alice" / "result_alice.json").read_text("utf-8"))
    assert result["image"] == str(image)


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("moderation_blocked", "ContentRejected", "rejected by the safety system"),
        ("content_policy_violation", "ContentRejected", "safety system"),
        ("bad_request", "InvalidRequest", "Invalid value"),
    ],
)
def test_a_refused_prompt_fails_at_once_in_the_apis_words(
    home: Path, api: ImagesStandIn, fault: str, error: str, words: str
) -> None:
    drop(home / "inbox", "p.txt", f"first\nsecond [fault:{fault}]\n")
    code, output = once(home, api)
    assert code == 1
    assert sum("second" in (c.prompt or "") for c in api.calls) == 1  # never retried
    report = (home / "failed" / "p.txt.error.txt").read_text("utf-8")
    assert f"line 2: {error}: HTTP 400: " in report and words in report
    assert f"Statut : ÉCHEC Erreur : {error}" in output
    assert len(images(home)) == 1  # the first line's image is kept


@pytest.mark.parametrize(
    "fault",
    ["server_error", "bad_gateway_html", "overloaded", "empty_data", "broken_base64",
     "truncated_image", "not_an_image", "reset", "rate_limit_exceeded", "html_page_200"],
)  # fmt: skip
def test_transient_failures_are_tried_again(home: Path, api: ImagesStandIn, fault: str) -> None:
    api.arm(fault, count=1, retry_after=0.3)
    drop(home / "inbox", "p.txt", "a calm lake\n")
    code, output = once(home, api)
    assert code == 0, output
    assert len(api.calls) == 2
    # The daemon's retry (the package's own are off); a rate limit is not a failed try.
    assert ("in flight at most" if fault == "rate_limit_exceeded" else "try 2/4 again") in output
    [image] = images(home)
    with Image.open(image) as picture:
        picture.verify()
    assert not list((home / "processing").rglob("*.png"))


def test_a_call_past_its_timeout_is_tried_again(home: Path, api: ImagesStandIn) -> None:
    api.arm("hang", count=1, seconds=30)
    drop(home / "inbox", "p.txt", "a slow lake\n")
    code, output = once(home, api, SORA_OPENAI_TIMEOUT="1")
    assert code == 0, output
    assert "GenerationTimeout (no answer within 1s)" in output


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("invalid_api_key", "CredentialsRefused", "Incorrect API key provided"),
        ("org_not_verified", "AccessDenied", "must be verified"),
        ("model_not_found", "ModelUnavailable", "does not exist"),
        ("insufficient_quota", "QuotaExceeded", "exceeded your current quota"),
    ],
)
def test_account_problems_pause_the_queue_and_blame_no_input(
    home: Path, api: ImagesStandIn, fault: str, error: str, words: str
) -> None:
    api.arm(fault, count=None)
    drop(home / "inbox", "p.txt", "a quiet forest\n")
    code, output = once(home, api)
    assert code == 1
    assert f"queue paused: {error}" in output and words in output
    assert not (home / "failed" / "p.txt").exists()
    assert (home / "processing" / "w1" / "p.txt").exists()  # kept for the next start
    assert KEY not in everything_written(home, output)


def test_the_queue_resumes_by_itself_once_the_quota_is_back(
    home: Path, api: ImagesStandIn, daemons: list[Daemon]
) -> None:
    api.arm("insufficient_quota", count=None)
    daemon = Daemon(home, openai_env(home, api), "run")
    daemons.append(daemon)
    daemon.expect("watching")
    drop(home / "inbox", "p.txt", "a mountain\n")
    daemon.expect("queue paused: QuotaExceeded")
    daemon.expect("add credit")
    api.clear()
    daemon.expect("queue resumed", timeout=10)
    daemon.expect(r"p\.txt: 1 image\(s\)", timeout=20)
    assert not (home / "failed" / "p.txt").exists()


def test_without_a_key_once_exits_2_and_run_waits_for_the_key(
    home: Path, api: ImagesStandIn, daemons: list[Daemon]
) -> None:
    drop(home / "inbox", "p.txt", "a meadow\n")
    code, output = once(home, api, OPENAI_API_KEY="")
    assert code == 2
    assert "OPENAI_API_KEY is not set" in output and str(home / ".env") in output
    assert (home / "inbox" / "p.txt").exists()
    env = openai_env(home, api, OPENAI_API_KEY="")
    generate = run_watcher(home, env, "generate", "--prompt-file", "inbox/p.txt", timeout=60)
    assert generate.returncode == 2 and "OPENAI_API_KEY is not set" in generate.stderr

    env = openai_env(home, api)
    del env["OPENAI_API_KEY"]
    daemon = Daemon(home, env, "run")
    daemons.append(daemon)
    daemon.expect("OPENAI_API_KEY is not set")
    assert (home / "inbox" / "p.txt").exists()  # nothing claimed while it waits
    (home / ".env").write_text(f"OPENAI_API_KEY={KEY}\n", encoding="utf-8")
    daemon.expect(r"p\.txt: 1 image\(s\)", timeout=20)
    assert KEY not in everything_written(home, "\n".join(daemon.output))


def test_a_refused_key_is_never_written_anywhere(home: Path, api: ImagesStandIn) -> None:
    wrong = "sk-proj-WRONGkey0123456789abcdefghijklmnop"
    drop(home / "inbox", "p.txt", "a river\n")
    code, output = once(home, api, OPENAI_API_KEY=wrong)
    assert code == 1
    assert "queue paused: CredentialsRefused" in output
    written = everything_written(home, output)
    assert wrong not in written and wrong[-12:] not in written
    status = run_watcher(home, openai_env(home, api, OPENAI_API_KEY=wrong), "status", timeout=60)
    assert status.returncode == 1 and "HTTP 401" in status.stdout
    assert wrong not in status.stdout + status.stderr


def test_status_says_the_key_and_model_are_accepted(home: Path, api: ImagesStandIn) -> None:
    drop(home / "inbox", "p.txt", "a dune\n")
    assert once(home, api)[0] == 0
    status = run_watcher(home, openai_env(home, api), "status", timeout=60)
    assert status.returncode == 0, status.stdout
    assert "key and model gpt-image-2 accepted" in status.stdout
    assert "today: 1 image(s)" in status.stdout and "tokens" in status.stdout


def test_kill_9_during_calls_still_gives_exactly_one_image_per_line(
    home: Path, api: ImagesStandIn
) -> None:
    api.latency = 30
    lines = [f"a harbour at hour {n}" for n in range(3)]
    drop(home / "inbox", "p.txt", "\n".join(lines) + "\n")
    daemon = Daemon(home, openai_env(home, api), "run")
    try:
        assert api.wait_in_flight(3, timeout=30), "\n".join(daemon.output)
        daemon.process.kill()
        daemon.process.wait(timeout=10)
    finally:
        daemon.stop()
    api.latency = 0.1
    code, output = once(home, api)
    assert code == 0, output
    assert len(images(home)) == 3
    assert sorted(sidecar(i)["prompt"] for i in images(home)) == sorted(lines)  # type: ignore[type-var]
    assert len(api.calls) == 6  # each prompt in flight was sent once more, no more
    assert output.count("sent again") == 3


def test_sigterm_with_calls_in_flight_stops_within_2_s(home: Path, api: ImagesStandIn) -> None:
    api.latency = 60
    drop(home / "inbox", "p.txt", "one\ntwo\nthree\n")
    daemon = Daemon(home, openai_env(home, api), "run")
    try:
        assert api.wait_in_flight(3, timeout=30), "\n".join(daemon.output)
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
        assert time.monotonic() - started < 2.0  # issue 12's bound: calls are not waited for
    finally:
        daemon.stop()
    assert (home / "processing" / "w1" / "p.txt").exists()  # taken up at the next start
    api.latency = 0.1
    assert once(home, api)[0] == 0
    assert len(images(home)) == 3


def test_a_rate_limited_backlog_rides_the_limit(home: Path, api: ImagesStandIn) -> None:
    api.max_in_flight, api.latency = 2, 0.3
    drop(home / "inbox", "p.txt", "".join(f"a field of flowers {n}\n" for n in range(16)))
    code, output = once(home, api, SORA_CONCURRENCY="6")
    assert code == 0, output
    assert len(images(home)) == 16
    assert "in flight at most" in output  # it lowered the number in flight
    refused = sum(c.status == 429 for c in api.calls)
    # 4 of the first 6 sent at once, then a probe of one more now and then: fewer refusals
    # than images (seen 10-12; a client that kept 6 in flight meets about 30)
    assert refused < 16


def test_the_daily_limit_pauses_the_queue(home: Path, api: ImagesStandIn) -> None:
    drop(home / "inbox", "p.txt", "one\ntwo\nthree\n")
    code, output = once(home, api, SORA_DAILY_LIMIT="2")
    assert code == 1
    assert len(images(home)) == 2
    assert "queue paused: DailyLimitReached" in output


def test_a_refused_key_replaced_in_env_resumes_the_queue(
    home: Path, api: ImagesStandIn, daemons: list[Daemon]
) -> None:
    wrong = "sk-proj-WRONGkey0123456789abcdefghijklmnop"
    (home / ".env").write_text(f"OPENAI_API_KEY={wrong}\n", encoding="utf-8")
    # In .env, and in the environment too, as systemd's EnvironmentFile= loads it.
    daemon = Daemon(home, openai_env(home, api, OPENAI_API_KEY=wrong), "run")
    daemons.append(daemon)
    daemon.expect("watching")
    drop(home / "inbox", "p.txt", "a harbour\n")
    daemon.expect("queue paused: CredentialsRefused")
    (home / ".env").write_text(f"OPENAI_API_KEY={KEY}\n", encoding="utf-8")
    daemon.expect("queue resumed", timeout=15)
    daemon.expect(r"p\.txt: 1 image\(s\)", timeout=20)
    written = everything_written(home, "\n".join(daemon.output))  # .env itself aside
    assert wrong not in written and KEY not in written


def test_waiting_for_the_key_feeds_the_watchdog_and_stops_on_sigterm(
    home: Path, api: ImagesStandIn, tmp_path: Path
) -> None:
    from tests.test_service import NotifySocket

    listener = NotifySocket(tmp_path / "notify.sock")
    env = openai_env(home, api, NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC="400000")
    del env["OPENAI_API_KEY"]
    daemon = Daemon(home, env, "run")
    try:
        daemon.expect("OPENAI_API_KEY is not set")
        listener.wait_for("READY=1")
        listener.wait_for("WATCHDOG=1", count=3)  # alive while it waits: not killed by systemd
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
        # The wait for the key ends at once; 5 s leaves room for a loaded machine's exit.
        assert time.monotonic() - started < 5.0
    finally:
        daemon.stop()
        listener.close()
    assert "Traceback" not in "\n".join(daemon.output)


def test_a_pause_waits_for_the_images_already_in_flight(home: Path, api: ImagesStandIn) -> None:
    api.latency = 1.0
    drop(home / "inbox", "p.txt", "first\nsecond [fault:insufficient_quota]\nthird\n")
    code, output = once(home, api)
    assert code == 1 and "queue paused: QuotaExceeded" in output
    # Images go out in line order: the first is published, the third waits, staged beside
    # its journal, for the second; nothing paid for was thrown away to be sent again.
    assert [sidecar(i)["prompt"] for i in images(home)] == ["first"]
    assert len(list((home / "processing" / "w1").glob(".staged-*.png"))) == 1
    assert len(api.calls) == 3

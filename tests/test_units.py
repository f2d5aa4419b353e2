"""Fast tests of the pieces, with a test double where the browser would be."""

from __future__ import annotations

import io
import os
import re
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from playwright.sync_api import Error as PlaywrightError

from sora_driver.backend import CAPABILITIES as WEB
from sora_driver.classify import api_error, finished_task_error
from sora_driver.errors import CloudflareChallenge, SessionExpired
from sora_driver.web import DriverConfig, Followed, SoraWebDriver, look_due
from sora_watcher import logs
from sora_watcher.backends.base import Generation, ImageFile, JobOptions, to_png
from sora_watcher.config import ConfigError, resolve
from sora_watcher.daemon import Daemon, RetryPolicy
from sora_watcher.errors import (
    ConcurrencyLimited,
    ContentRejected,
    DownloadFailed,
    GenerationError,
    GenerationTimeout,
    Overloaded,
    RateLimited,
    TaskFailed,
)
from sora_watcher.folders import (
    Folders,
    JobState,
    image_name,
    is_ignored,
    publish,
    publish_image,
    stage_image,
)
from sora_watcher.inputs import InputError, Rules, prompts_from_text, read_prompts
from sora_watcher.journal import Journal, PromptState

# -- configuration ----------------------------------------------------------------------------


def test_flag_beats_environment_beats_default(tmp_path: Path) -> None:
    env = {"SORA_HOME": str(tmp_path), "SORA_TIMEOUT": "90", "SORA_MAX_RETRIES": "5"}
    settings = resolve({"timeout": "12", "max_retries": None}, env)
    assert settings.timeout == 12
    assert settings.max_retries == 5
    assert settings.headless is True  # default
    assert settings.inbox == tmp_path / "inbox"
    assert settings.base_url == "https://sora.com"


@pytest.mark.parametrize(
    ("name", "value"),
    [("SORA_TIMEOUT", "soon"), ("SORA_HEADLESS", "maybe"), ("SORA_MAX_RETRIES", "-1")],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        resolve({}, {name: value})


# -- inputs -----------------------------------------------------------------------------------


def test_one_prompt_per_line_skipping_blanks_and_comments() -> None:
    prompts = prompts_from_text("# title\n\nfirst prompt\n   \n  second  \n#x\nthird\n")
    assert [(p.text, p.line) for p in prompts] == [
        ("first prompt", 3),
        ("second", 5),
        ("third", 7),
    ]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "no prompt"),
        ("blank.txt", b"  \n\t\n# c\n", "no prompt"),
        ("latin1.txt", "café".encode("latin-1"), "UTF-8"),
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        ("image.png", b"anything", "unsupported input type"),
    ],
)
def test_bad_inputs_say_why(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=reason):
        read_prompts(path)


def test_a_folder_is_not_a_prompt_file(tmp_path: Path) -> None:
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(InputError, match="folder"):
        read_prompts(tmp_path / "folder.txt")


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)))
def test_every_prompt_is_a_stripped_non_comment_line(lines: list[str]) -> None:
    text = "\n".join(lines)
    for prompt in prompts_from_text(text):
        assert prompt.text == prompt.text.strip()
        assert prompt.text and not prompt.text.startswith("#")
        assert prompt.text in text.splitlines()[prompt.line - 1]


@given(st.binary(max_size=300), st.sampled_from(["a.txt", "b.TXT", "c.json", "d"]))
def test_any_bytes_give_prompts_or_a_reason(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, name: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data)
    limits = Rules(max_bytes=200, max_prompt_chars=50)
    try:
        prompts = read_prompts(path, limits)
    except InputError as exc:
        assert str(exc)  # always a reason a user can read
        return
    assert prompts and len(data) <= 200
    assert all(0 < len(p.text) <= 50 and p.text == p.text.strip() for p in prompts)


# -- folders and names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        (".hidden.txt", True),
        ("a.tmp", True),
        ("a.txt.part", True),
        (".a.txt.swp", True),
        ("a.txt~", True),
        ("prompt.txt", False),
        ("theme_alice.json", False),
    ],
)
def test_ignored_names(name: str, ignored: bool) -> None:
    assert is_ignored(name) is ignored


def test_image_name_has_time_and_prompt_hash() -> None:
    name = image_name("a cat", datetime(2025, 4, 15, 18, 42, 1))
    assert re.fullmatch(r"20250415_184201_[0-9a-f]{5}\.png", name)
    assert name[16:21] == "51e46"  # sha256("a cat")[:5]


def test_images_never_overwrite_each_other(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        staged = stage_image(tmp_path, f"png {i}".encode())
        paths.append(publish_image(staged, tmp_path / "images", "same prompt", {}))
        staged.unlink()
    assert len(set(paths)) == 3
    assert [p.read_bytes() for p in paths] == [b"png 0", b"png 1", b"png 2"]
    assert all(p.with_suffix(".json").is_file() for p in paths)
    assert not list((tmp_path / "images").glob(".*"))  # no temporary file left behind


def test_publishing_again_after_a_crash_finds_the_image_already_there(tmp_path: Path) -> None:
    staged = stage_image(tmp_path, b"the png")
    noted: list[str] = []
    first = publish(staged, tmp_path / "x.png", remember=noted.append)
    # the crash came after the link, before the journal said "done": publish once more
    again = publish(staged, tmp_path / "y.png", chosen=noted[-1], remember=noted.append)
    assert again == first
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["x.png"]
    # the name noted, but the crash came before the link: the name is taken then
    other = stage_image(tmp_path, b"another png")
    made = publish(other, tmp_path / "x.png", chosen="x_2.png")
    assert made.name == "x_2.png" and made.read_bytes() == b"another png"


def folders_in(root: Path) -> Folders:
    folders = Folders(*(root / n for n in ("inbox", "processing", "processed", "failed", "im")))
    folders.ensure()
    return folders


def test_claim_then_finish_without_overwriting(tmp_path: Path) -> None:
    folders = folders_in(tmp_path)
    for round_ in range(2):
        (folders.inbox / "p.txt").write_text(f"round {round_}")
        claimed = folders.claim(folders.inbox / "p.txt")
        assert claimed == folders.processing / "p.txt"
        assert folders.claim(folders.inbox / "p.txt") is None  # already taken
        folders.finish(claimed, JobState.PROCESSED)
    assert (folders.processed / "p.txt").read_text() == "round 0"
    assert (folders.processed / "p_2.txt").read_text() == "round 1"


# -- log lines --------------------------------------------------------------------------------


def test_generation_log_lines_use_the_users_wording(tmp_path: Path) -> None:
    log_file = logs.setup(tmp_path, debug=False)
    logs.success('a "quoted" {braced} prompt', "images/20250415_184201_a1b2c.png", 23.44)
    logs.failure("another", "GenerationTimeout", "task_1 still running after 60s")
    lines = log_file.read_text(encoding="utf-8").splitlines()
    stamp = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] "
    assert re.match(
        stamp + r'Prompt utilisé : "a "quoted" \{braced\} prompt" Statut : SUCCÈS '
        r"Fichier : images/20250415_184201_a1b2c\.png Durée : 23\.4s$",
        lines[-2],
    )
    assert re.match(
        stamp + r'Prompt utilisé : "another" Statut : ÉCHEC Erreur : GenerationTimeout '
        r"\(task_1 still running after 60s\)$",
        lines[-1],
    )


def test_secrets_are_redacted_from_log_messages() -> None:
    text = (
        "GET failed\n  - cookie: __Secure-next-auth.session-token=abc123; oai-did=xyz\n"
        "Authorization: Bearer eyJhbGciOi.payload.sig\nhttps://h/a.png?st=1&sig=s3cr3t&x=1"
    )
    cleaned = logs.redact(text)
    for secret in ("abc123", "xyz", "eyJhbGciOi", "s3cr3t"):
        assert secret not in cleaned
    assert cleaned.startswith("GET failed")


# -- error classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, '{"error": {"code": "token_expired", "message": "expired"}}', SessionExpired),
        (
            429,
            '{"error": {"code": "too_many_concurrent_tasks", "message": "3"}}',
            ConcurrencyLimited,
        ),
        (503, '{"error": {"code": "heavy_load", "message": "busy"}}', Overloaded),
        (403, "<title>Just a moment...</title>", CloudflareChallenge),
        (400, '{"error": {"message": "This prompt violates our content policy"}}', ContentRejected),
        (404, '{"error": {"message": "Not found"}}', TaskFailed),
    ],
)
def test_api_errors_are_named(status: int, body: str, expected: type[GenerationError]) -> None:
    error = api_error(status, body, "/backend/video_gen")
    assert type(error) is expected
    assert str(status) in error.detail


def test_credit_limit_waits_until_the_reset() -> None:
    body = '{"error": {"type": "rate_limit_exhausted", "access_resets_in_seconds": 3600}}'
    error = api_error(429, body, "/backend/video_gen")
    assert isinstance(error, RateLimited)
    assert error.resume_after == 3600


def test_finished_tasks() -> None:
    ok = {"id": "t", "status": "succeeded", "generations": [{"url": "u"}], "progress_pct": 0.67}
    assert finished_task_error(ok) is None
    moderated = {"id": "t", "status": "failed", "moderation_result": {"type": "terminal"}}
    assert isinstance(finished_task_error(moderated), ContentRejected)
    broken = {"id": "t", "status": "failed", "failure_reason": "internal"}
    assert isinstance(finished_task_error(broken), TaskFailed)


# -- images -----------------------------------------------------------------------------------


def encoded(fmt: str, size: tuple[int, int] = (64, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


def test_webp_and_jpeg_become_png_of_the_same_size() -> None:
    for fmt in ("WEBP", "JPEG"):
        png, width, height, source = to_png(encoded(fmt), "http://x/a")
        assert (width, height, source) == (64, 32, fmt)
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG"
            assert image.size == (64, 32)


@pytest.mark.parametrize("data", [b"", b"<html>Access denied</html>", encoded("PNG")[:-40]])
def test_what_is_not_a_whole_image_is_a_download_failure(data: bytes) -> None:
    with pytest.raises(DownloadFailed, match="not a complete image"):
        to_png(data, "http://x/a.png")


# -- the daemon's worker with a test double ---------------------------------------------------


def tiny_png(seed: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1, 1), tuple(seed.encode()[-3:])).save(out, format="PNG")
    return out.getvalue()


class ScriptedBackend:
    """Answers each prompt from a script of errors, then with a tiny image."""

    def __init__(self, errors: dict[str, list[GenerationError]]) -> None:
        self.errors = errors
        self.calls: list[str] = []
        self.events: list[str] = []  # submits and collects, in order
        self.prompts: dict[str, str] = {}

    def submit(self, prompt: str, options: JobOptions) -> str:
        self.calls.append(prompt)
        self.events.append(f"submit {prompt}")
        pending = self.errors.get(prompt, [])
        if pending:
            raise pending.pop(0)
        task_id = f"task_{len(self.calls)}"
        self.prompts[task_id] = prompt
        return task_id

    def finished(self, task_ids: list[str], wait: float) -> list[str]:
        return task_ids

    def collect(self, task_id: str, options: JobOptions) -> Generation:
        self.events.append(f"collect {self.prompts[task_id]}")
        image = ImageFile(tiny_png(task_id), 1, 1, "http://x/full.png", "PNG")
        return Generation(task_id, [image])

    def find_task(self, prompt: str, since: float) -> str | None:
        return None

    def close(self) -> None:
        pass


def make_daemon(tmp_path: Path, backend: ScriptedBackend) -> Daemon:
    settings = resolve(
        {"home": str(tmp_path), "max_retries": "2", "retry_delay": "0", "settle_seconds": "0"}, {}
    )
    return Daemon(settings, lambda: backend, threading.Event(), WEB, once=True)


def test_transient_errors_are_retried_then_succeed(tmp_path: Path) -> None:
    backend = ScriptedBackend({"a": [GenerationTimeout("slow"), Overloaded("busy")]})
    daemon = make_daemon(tmp_path, backend)
    daemon.folders.ensure()
    (daemon.folders.inbox / "in.txt").write_text("a\n")
    daemon.run()
    assert backend.calls == ["a", "a", "a"]
    assert (daemon.folders.processed / "in.txt").exists()
    assert len(list(daemon.settings.images.glob("*.png"))) == 1


def test_the_sites_limit_right_after_a_task_finished_is_not_a_pause(tmp_path: Path) -> None:
    # The next prompt goes out before the finished task's image is downloaded; if the site
    # still counts that task, its "too many" is a wait for a slot, not a stop of the queue.
    backend = ScriptedBackend({"b": [ConcurrencyLimited("you already have 1 in progress")]})
    daemon = make_daemon(tmp_path, backend)
    daemon.folders.ensure()
    (daemon.folders.inbox / "in.txt").write_text("a\nb\n")
    daemon.run()
    assert not daemon.stop.is_set(), "once stops on a pause"
    assert backend.calls == ["a", "b", "b"]
    assert (daemon.folders.processed / "in.txt").exists()
    assert len(list(daemon.settings.images.glob("*.png"))) == 2


def test_the_next_input_is_sent_before_the_finished_image_is_downloaded(tmp_path: Path) -> None:
    # One prompt per file is how pipelines feed the daemon: the next file's generation must
    # run while the last one's image comes down, as it does for the lines of one file.
    backend = ScriptedBackend({})
    daemon = make_daemon(tmp_path, backend)
    daemon.folders.ensure()
    for name in ("1.txt", "2.txt", "3.txt"):
        (daemon.folders.inbox / name).write_text(f"prompt {name}\n")
    daemon.run()
    assert backend.events == [
        "submit prompt 1.txt",
        "submit prompt 2.txt",
        "collect prompt 1.txt",
        "submit prompt 3.txt",
        "collect prompt 2.txt",
        "collect prompt 3.txt",
    ]
    assert len(list(daemon.folders.processed.iterdir())) == 3


def test_permanent_failure_keeps_the_other_images_and_explains(tmp_path: Path) -> None:
    backend = ScriptedBackend(
        {"bad": [ContentRejected("moderation terminal")], "slow": [GenerationTimeout("t")] * 3}
    )
    daemon = make_daemon(tmp_path, backend)
    daemon.folders.ensure()
    (daemon.folders.inbox / "in.txt").write_text("good\nbad\nslow\n")
    daemon.run()
    assert backend.calls == ["good", "bad", "slow", "slow", "slow"]
    assert (daemon.folders.failed / "in.txt").exists()
    report = (daemon.folders.failed / "in.txt.error.txt").read_text()
    assert "line 1: done" in report
    assert "line 2: ContentRejected: moderation terminal" in report
    assert "line 3: GenerationTimeout" in report
    assert len(list(daemon.settings.images.glob("*.png"))) == 1
    assert daemon.unfinished == 1


def test_a_stopping_error_leaves_the_input_claimed_not_failed(tmp_path: Path) -> None:
    backend = ScriptedBackend({"a": [SessionExpired("null session")]})
    daemon = make_daemon(tmp_path, backend)
    daemon.folders.ensure()
    (daemon.folders.inbox / "in.txt").write_text("a\n")
    daemon.run()
    assert (daemon.folders.processing / "in.txt").exists()
    assert not os.listdir(daemon.folders.failed)
    journal = Journal.load(Journal.path_for(daemon.folders.processing / "in.txt"))
    assert journal.entries[0].state is PromptState.SUBMITTING  # found again at the next start


def test_retry_delays_grow_with_jitter() -> None:
    policy = RetryPolicy(max_retries=5, delay=10, jitter=0.2)
    first, third = policy.wait_before(1), policy.wait_before(3)
    assert 8 <= first <= 12
    assert 32 <= third <= 48


def test_every_setting_is_documented_in_env_example() -> None:
    from sora_watcher.config import OPTIONS

    documented = (Path(__file__).parent.parent / ".env.example").read_text("utf-8")
    missing = [env for env, _ in OPTIONS.values() if f"\n{env}=" not in documented]
    assert missing == []


def test_a_reset_time_of_zero_does_not_become_a_tight_loop() -> None:
    body = '{"error": {"type": "rate_limit_exhausted", "access_resets_in_seconds": 0}}'
    error = api_error(429, body, "/backend/video_gen")
    assert isinstance(error, RateLimited) and error.resume_after == 5


def follower(tmp_path: Path, answer: object) -> tuple[SoraWebDriver, Followed, list[str]]:
    """A driver (never opened) following one task 2 s old, whose task-list look answers this."""
    driver = SoraWebDriver(DriverConfig("http://127.0.0.1:9", tmp_path / "session.json"))
    now = time.monotonic()
    followed = Followed(started=now - 2.0, deadline=now + 60, news_at=now - 2.0)
    driver._following["task_1"] = followed
    asked: list[str] = []

    def api_get(path: str) -> object:
        asked.append(path)
        if isinstance(answer, Exception):
            raise answer
        return answer

    driver._api_get = api_get  # type: ignore[method-assign]
    return driver, followed, asked


def test_a_look_at_the_task_list_sees_a_finished_task_and_learns_its_duration(
    tmp_path: Path,
) -> None:
    listing = {"task_responses": [{"id": "task_1", "status": "succeeded", "generations": []}]}
    driver, followed, asked = follower(tmp_path, listing)
    driver._look_if_due(["task_1"])
    assert asked == ["/backend/v2/list_tasks?limit=20"]
    assert followed.task["status"] == "succeeded"
    assert list(driver._recent) == [pytest.approx(2.0, abs=0.5)]


def test_no_look_before_the_quickest_quarter_of_generations_would_end(tmp_path: Path) -> None:
    driver, _, asked = follower(tmp_path, {"task_responses": []})
    driver._recent.extend([12.0, 9.0, 30.0, 10.0, 13.0, 11.0])
    driver._look_if_due(["task_1"])
    assert asked == []
    assert driver._next_look_at(["task_1"]) == pytest.approx(time.monotonic() + 8.0, abs=0.5)


def test_a_task_is_looked_for_just_before_its_expected_end_then_often_then_every_5_percent() -> (
    None
):
    followed = Followed(started=100.0, deadline=200.0, news_at=100.0)
    assert look_due(followed, expected=2.0) == pytest.approx(101.95)
    followed.looked_at = 101.5  # a look for another task: this one is not due yet
    assert look_due(followed, expected=2.0) == pytest.approx(101.95)
    followed.looked_at = 101.95  # not ended yet: its end is near
    assert look_due(followed, expected=2.0) == pytest.approx(101.975)
    followed.looked_at = 102.1
    assert look_due(followed, expected=2.0) == pytest.approx(102.125)
    followed.looked_at = 102.2  # 0.15 s on: back to 5 % of its age
    assert look_due(followed, expected=2.0) == pytest.approx(102.31)
    followed.looked_at = 120.0
    assert look_due(followed, expected=2.0) == pytest.approx(121.0)
    followed.looked_at = 100.5  # before any generation was seen: 5 % of its age, 0.1 s at least
    assert look_due(followed, expected=0.0) == pytest.approx(100.6)


@pytest.mark.parametrize(
    ("error", "backoff"),
    [
        (RateLimited("429 on the task list", resume_after=30.0), 30.0),
        (PlaywrightError("net::ERR_CONNECTION_RESET"), 2.0),
        (ValueError("not JSON"), 2.0),
        (Overloaded("503 heavy_load"), 2.0),
    ],
)
def test_a_failed_look_stops_nothing_and_slows_the_looks(
    tmp_path: Path, error: Exception, backoff: float
) -> None:
    driver, followed, asked = follower(tmp_path, error)
    driver._look_if_due(["task_1"])  # no exception: the queue goes on
    assert len(asked) == 1 and followed.error is None and followed.task == {}
    assert driver._next_look_at(["task_1"]) == pytest.approx(time.monotonic() + backoff, abs=0.5)
    driver._look_if_due(["task_1"])
    assert len(asked) == 1, "not asked again before the backoff"

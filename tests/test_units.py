"""Fast tests of the pieces, with a test double where the browser would be."""

from __future__ import annotations

import io
import os
import re
import threading
import types
import typing
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from sora_driver.backend import CAPABILITIES as WEB
from sora_driver.classify import api_error
from sora_driver.diagnostics import Diagnostics
from sora_driver.errors import CloudflareChallenge, PageError, SessionExpired
from sora_driver.session import SessionAnswer
from sora_driver.sora_api import Task, finished_task_error, submitted_id, tasks_in
from sora_watcher import backends, logs
from sora_watcher.atomic import publish
from sora_watcher.backends.base import Generation, ImageFile, JobOptions, to_png
from sora_watcher.config import ConfigError, resolve
from sora_watcher.daemon import Daemon, RunMode
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
from sora_watcher.folders import Folders, JobState, is_ignored
from sora_watcher.images import image_name, publish_image, stage_image
from sora_watcher.inputs import InputError, Rules, prompts_from_text, read_prompts
from sora_watcher.journal import Journal, PromptState
from sora_watcher.pipeline import RetryPolicy

# -- configuration ----------------------------------------------------------------------------


def test_flag_beats_environment_beats_default(tmp_path: Path) -> None:
    env = {"SORA_HOME": str(tmp_path), "SORA_TIMEOUT": "90", "SORA_MAX_RETRIES": "5"}
    settings = resolve({"timeout": "12", "max_retries": None}, env)
    assert settings.timeout == 12
    assert settings.max_retries == 5
    assert settings.inbox == tmp_path / "inbox"
    assert settings.daily_limit == 0  # default


@pytest.mark.parametrize(
    ("name", "value"),
    [("SORA_TIMEOUT", "soon"), ("SORA_MAX_RETRIES", "-1"), ("SORA_BACKEND", "sora")],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        resolve({}, {name: value})


def test_a_bad_web_setting_stops_the_web_backend_at_start(tmp_path: Path) -> None:
    env = {"SORA_HOME": str(tmp_path), "SORA_BACKEND": "web", "SORA_HEADLESS": "maybe"}
    settings = resolve({}, env)  # the core section does not know it
    with pytest.raises(ConfigError, match="SORA_HEADLESS='maybe': expected true or false"):
        backends.load(settings.backend).capabilities(settings, env)


def test_each_table_converts_its_defaults_to_the_types_its_settings_declare(
    tmp_path: Path,
) -> None:
    from sora_driver.settings import read_settings as read_web
    from sora_watcher.backends.openai_settings import read_settings as read_openai

    def wrong_types(settings: object) -> list[str]:
        wrong = []
        for name, hint in typing.get_type_hints(type(settings)).items():
            value = getattr(settings, name)
            origin = typing.get_origin(hint)
            if origin is typing.Literal:
                fits = value in typing.get_args(hint)
            else:  # a class, a union (str | None) or a generic (Mapping[str, object])
                fits = isinstance(value, hint if origin in (None, types.UnionType) else origin)
            if not fits:
                wrong.append(f"{name}={value!r} is not {hint}")
        return wrong

    assert wrong_types(resolve({}, {"SORA_HOME": str(tmp_path)})) == []
    assert wrong_types(read_openai({})) == []
    assert wrong_types(read_web({}, {}, tmp_path, debug=False)) == []


def test_the_flags_come_from_the_tables() -> None:
    from sora_watcher.cli import parser
    from sora_watcher.config import all_options

    given = parser().parse_args(["once", "--headed", "--base-url", "http://x", "--timeout", "9"])
    assert given.command == "once"
    assert (given.headless, given.base_url, given.timeout) == ("false", "http://x", "9")
    flags = {o.flag: o.key for o in all_options() if o.flag}
    assert flags == {
        "--home": "home", "--inbox": "inbox", "--images": "images", "--processed": "processed",
        "--failed": "failed", "--logs": "logs", "--session-file": "session_file",
        "--base-url": "base_url", "--timeout": "timeout", "--max-retries": "max_retries",
        "--browser-path": "browser_path", "--selectors": "selectors", "--headed": "headless",
        "--debug": "debug", "--backend": "backend", "--env-file": "env_file", "--http": "http",
    }  # fmt: skip
    assert parser().parse_args([]).debug is None  # not given: the environment decides
    # before the command as well as after it: the command's copy of a flag hides nothing
    before = parser().parse_args(["--home", "/srv/a", "--debug", "run", "--inbox", "in"])
    assert (before.home, before.debug, before.inbox, before.command) == (
        "/srv/a",
        "true",
        "in",
        "run",
    )


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


def test_each_worker_claims_into_its_own_processing_folder(tmp_path: Path) -> None:
    paths = [tmp_path / n for n in ("inbox", "processing", "processed", "failed", "im")]
    folders = Folders.for_worker(*paths, worker="host-2")
    assert folders.processing == tmp_path / "processing" / "host-2"
    assert (folders.inbox, folders.processed, folders.images) == (paths[0], paths[2], paths[4])


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
    assert finished_task_error(Task.read(ok, "http://x")) is None
    moderated = {"id": "t", "status": "failed", "moderation_result": {"type": "terminal"}}
    assert isinstance(finished_task_error(Task.read(moderated, "http://x")), ContentRejected)
    broken = {"id": "t", "status": "failed", "failure_reason": "internal"}
    assert isinstance(finished_task_error(Task.read(broken, "http://x")), TaskFailed)


def test_task_answers_are_read_leniently_into_typed_tasks() -> None:
    listing = {
        "task_responses": [
            "not a task",
            {
                "id": "task_1",
                "status": "succeeded",
                "created_at": "2026-01-02T03:04:05Z",
                "moderation_result": "odd",  # of no use: read as none
                "num_unsafe_generations": "many",
                "generations": [
                    {"encodings": {"source": {"path": "/vg-assets/a.png?sig=s"}}, "width": 480},
                    {"url": "https://cdn/b.webp", "width": 480, "height": 480},
                    "not a generation",
                ],
            },
        ]
    }
    [task] = tasks_in(listing, "https://sora.test")
    assert (task.id, task.status, task.finished) == ("task_1", "succeeded", True)
    assert task.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()
    assert (task.moderation, task.unsafe_generations) == ({}, 0)
    assert [p.url for p in task.generations] == [
        "https://sora.test/vg-assets/a.png?sig=s",
        "https://cdn/b.webp",
        None,
    ]
    assert (task.generations[0].width, task.generations[0].height) == (480, None)
    assert tasks_in({"id": "task_2", "status": "running"}, "https://sora.test")[0].id == "task_2"
    assert tasks_in(["what"], "https://sora.test") == []


@pytest.mark.parametrize("body", [{}, {"id": ""}, [], "task_1", None])
def test_a_submission_answered_without_a_task_id_is_one_retryable_error(body: object) -> None:
    with pytest.raises(PageError, match="unexpected answer: POST /backend/video_gen: no task id"):
        submitted_id(body)
    assert submitted_id({"id": "task_1"}) == "task_1"


def test_the_one_session_check() -> None:
    url = "https://sora.test/api/auth/session"
    logged_in = SessionAnswer(200, '{"user": {"email": "ann@x"}, "expires": "2027-01-01"}')
    assert (logged_in.valid, logged_in.user, logged_in.expires) == (True, "ann@x", "2027-01-01")
    assert logged_in.require_valid(url)["expires"] == "2027-01-01"
    for text in ("null", "{}", '{"user": null}'):
        assert not SessionAnswer(200, text).valid
        with pytest.raises(SessionExpired, match="no longer valid"):
            SessionAnswer(200, text).require_valid(url)
    with pytest.raises(PageError, match="not JSON"):
        SessionAnswer(200, "<html>Just a moment...</html>").require_valid(url)


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
    return Daemon(settings, lambda: backend, threading.Event(), WEB, RunMode.ONCE)


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


def env_example_sections() -> dict[str, dict[str, str]]:
    """.env.example's variables and values by section: "" for the common part, else the
    backend named by a "# --- The <name> backend" header."""
    sections: dict[str, dict[str, str]] = {"": {}}
    section = ""
    for line in (Path(__file__).parent.parent / ".env.example").read_text("utf-8").splitlines():
        if header := re.match(r"# --- The ([\w-]+) (?:backend|section)", line):
            section = header[1]
            sections[section] = {}
        elif assignment := re.match(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            sections[section][assignment[1]] = assignment[2]
    return sections


def test_every_setting_is_documented_in_env_example_in_its_section() -> None:
    from sora_watcher.config import OPTIONS, sections

    tables = {"": OPTIONS, **sections()}
    sections = env_example_sections()
    declared = {
        name: {option.env: option.default for option in table}
        for name, table in tables.items()
        if table
    }
    assert {name: set(values) for name, values in sections.items()} == {
        name: set(values) for name, values in declared.items()
    }
    blank_is_default = {o.env for table in tables.values() for o in table if o.blank_is_default}
    wrong_defaults = [
        (env, value)
        for name, values in sections.items()
        for env, value in values.items()
        if value != declared[name][env] and not (value == "" and env in blank_is_default)
    ]
    assert wrong_defaults == []


def test_a_reset_time_of_zero_does_not_become_a_tight_loop() -> None:
    body = '{"error": {"type": "rate_limit_exhausted", "access_resets_in_seconds": 0}}'
    error = api_error(429, body, "/backend/video_gen")
    assert isinstance(error, RateLimited) and error.resume_after == 5


class CapturedPage:
    """What a capture reads of a page: its screenshot and its HTML (with its secrets)."""

    def __init__(self, html: str) -> None:
        self.html = html

    def is_closed(self) -> bool:
        return False

    def screenshot(self, **_: object) -> bytes:
        return b"\x89PNG fake"

    def content(self) -> str:
        return self.html


def test_a_capture_keeps_no_token_and_only_its_owner_may_read_it(tmp_path: Path) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlX2hlcmU"
    html = (
        f'<script>window.__session = {{"accessToken":"tok-{jwt[:12]}", "user": "ann"}};'
        f'fetch(u, {{headers: {{Authorization: "Bearer abc.DEF_123-xyz"}}}});</script>'
        f"<div data-jwt='{jwt}'>Hello</div>"
    )
    error = PageError("the composer is gone")
    Diagnostics(tmp_path / "debug").capture(typing.cast(typing.Any, CapturedPage(html)), "p", error)
    [saved_html] = (tmp_path / "debug").glob("*.html")
    [shot] = (tmp_path / "debug").glob("*.png")
    saved = saved_html.read_text(encoding="utf-8")
    assert "eyJ" not in saved and "abc.DEF_123-xyz" not in saved and "tok-" not in saved
    assert "Hello" in saved and '"user": "ann"' in saved
    assert {saved_html.stat().st_mode & 0o777, shot.stat().st_mode & 0o777} == {0o600}
    assert str(saved_html) in error.detail

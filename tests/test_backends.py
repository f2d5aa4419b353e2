"""The seam: what each backend accepts, how the OpenAI answers are classified, the daily limit,
and the error tree's promises. Unit tests; the end-to-end proof is in test_openai.py."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import httpx2
import openai
import pytest
from PIL import Image

from sora_driver.backend import CAPABILITIES as WEB
from sora_driver.errors import PageError, SessionExpired
from sora_watcher.backends import BACKENDS, load
from sora_watcher.backends.base import JobOptions, to_png
from sora_watcher.backends.openai_errors import Classifier, EndpointNotFound, public_url, redact
from sora_watcher.backends.openai_images import size_for
from sora_watcher.backends.openai_settings import read_settings
from sora_watcher.config import ConfigError, concurrency_for, resolve
from sora_watcher.errors import (
    AccessDenied,
    ConcurrencyLimited,
    ContentRejected,
    CredentialsRefused,
    DailyLimitReached,
    DownloadFailed,
    GenerationError,
    GenerationTimeout,
    Interrupted,
    InvalidRequest,
    ModelUnavailable,
    Overloaded,
    QuotaExceeded,
    Unreachable,
)
from sora_watcher.hooks import Hook
from sora_watcher.inputs import InputError, Rules, read_prompts
from sora_watcher.quota import DailyCount, seconds_to_midnight, todays_images, tokens

KEY = "sk-proj-unit0123456789abcdefghijklmnopqrstuv"
ENV = {"OPENAI_API_KEY": KEY}


def openai_capabilities(tmp_path: Path, **env: str) -> Rules:
    settings = resolve({"home": str(tmp_path)}, {})
    return Rules(capabilities=load("openai").capabilities(settings, {**ENV, **env}))


def job(tmp_path: Path, rules: Rules, **fields: object) -> JobOptions:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"prompt": "x", **fields}), encoding="utf-8")
    return read_prompts(path, rules)[0].options


# -- what each backend accepts ------------------------------------------------------------------


def test_the_registry_names_every_backend_and_openai_is_the_default() -> None:
    assert set(BACKENDS) == {"openai", "web", "instant", "diffusers", "chatgpt-web"}
    assert resolve({}, {}).backend == "openai"
    assert f"the {resolve({}, {}).backend} backend" == "the openai backend"  # the word users write
    with pytest.raises(ConfigError, match="SORA_BACKEND='sora': expected one of openai, web, inst"):
        resolve({}, {"SORA_BACKEND": "sora"})


def test_the_registry_lists_each_backends_options_without_loading_the_backend() -> None:
    code = """if True:
        import json, sys
        from sora_watcher.backends import sections
        tables = {str(name): [option.env for option in table] for name, table in sections().items()}
        heavy = [m for m in ("openai", "playwright", "sora_driver.backend") if m in sys.modules]
        print(json.dumps([tables, heavy]))
    """
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    tables, heavy = json.loads(answer.stdout)
    assert heavy == []
    assert tables["instant"] == []
    assert "OPENAI_API_KEY" in tables["openai"] and "SORA_HEADLESS" in tables["web"]


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        ({}, "1024x1024"),
        ({"aspect_ratio": "3:2"}, "1536x1024"),
        ({"aspect_ratio": "2:3"}, "1024x1536"),
        ({"aspect_ratio": "16:9"}, "1536x864"),
        ({"aspect_ratio": "9:16"}, "864x1536"),
        ({"aspect_ratio": "16:9", "size": "2048x1152"}, "2048x1152"),  # size wins
        ({"size": "auto"}, "auto"),
    ],
)
def test_openai_sizes_from_the_aspect_ratio(
    tmp_path: Path, fields: dict[str, object], size: str
) -> None:
    options = job(tmp_path, openai_capabilities(tmp_path), **fields)
    assert size_for(options, "gpt-image-2") == size


def test_older_models_get_the_nearest_fixed_size() -> None:
    assert size_for(JobOptions("16:9"), "some-older-model") == "1536x1024"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"size": "1000x1000"}, "size '1000x1000': both sides must be multiples of 16"),
        ({"size": "3200x800"}, "size '3200x800': the ratio must be between 1:3 and 3:1"),
        ({"size": "4096x2304"}, "size '4096x2304': at most 3840x2160"),
        ({"size": "big"}, "size 'big' is not WxH (e.g. 1536x1024) nor one of auto, 1024x1024"),
        ({"quality": "ultra"}, "quality 'ultra' is not one of auto, low, medium, high"),
        ({"background": "clear"}, "background 'clear' is not one of auto, opaque, transparent"),
        ({"variants": 11}, "variants 11 is not one of 1, 2, 3"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio '4:3' is not one of 1:1, 3:2, 2:3, 16:9, 9:16"),
        ({"model": "dall-e-3", "size": "1536x864"}, "dall-e-3 takes only auto, 1024x1024"),
    ],
)
def test_openai_refuses_what_it_cannot_do_before_anything_is_paid(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError) as caught:
        job(tmp_path, openai_capabilities(tmp_path), **fields)
    assert message in str(caught.value)


def test_the_newer_models_take_the_higher_qualities(tmp_path: Path) -> None:
    rules = openai_capabilities(tmp_path, SORA_OPENAI_MODEL="gpt-image-2.6-flare")
    assert job(tmp_path, rules, quality="max").quality == "max"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"size": "1024x1024"}, "size: this backend takes aspect_ratio, not size"),
        ({"quality": "high"}, "quality: this backend does not support it"),
        ({"model": "gpt-image-2"}, "model: this backend has no choice of model"),
    ],
)
def test_the_web_backend_names_what_it_cannot_do(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        job(tmp_path, Rules(capabilities=WEB), **fields)


def test_concurrency_is_checked_against_the_backends_limit() -> None:
    settings = resolve({"concurrency": "8"}, {})
    assert concurrency_for(settings, 16, 4) == 8
    with pytest.raises(ConfigError, match="the openai backend runs at most 3"):
        concurrency_for(settings, 3, 1)
    assert concurrency_for(resolve({}, {}), 16, 4) == 4  # empty: the backend's default
    with pytest.raises(ConfigError, match="at most 16"):
        resolve({"concurrency": "17"}, {})


def test_openai_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="SORA_OPENAI_QUALITY='best'"):
        read_settings({"SORA_OPENAI_QUALITY": "best"})
    with pytest.raises(ConfigError, match="SORA_OPENAI_MODERATION='none'"):
        read_settings({"SORA_OPENAI_MODERATION": "none"})
    config = read_settings(ENV)
    assert (config.model, config.quality, config.moderation) == ("gpt-image-2", "auto", "auto")
    assert KEY not in repr(config)  # a settings dump never shows the key


def test_an_empty_openai_variable_means_its_default() -> None:
    config = read_settings({"OPENAI_BASE_URL": "", "SORA_OPENAI_TIMEOUT": "", "OPENAI_ORG_ID": ""})
    assert (config.base_url, config.timeout, config.organization) == (
        "https://api.openai.com/v1",
        300,
        None,
    )
    with pytest.raises(ConfigError, match="SORA_OPENAI_TIMEOUT='0': must be at least 1"):
        read_settings({"SORA_OPENAI_TIMEOUT": "0"})


def test_web_settings_flag_beats_environment_and_debug_shows_the_browser_on_a_screen(
    tmp_path: Path,
) -> None:
    from sora_driver.settings import from_settings
    from sora_driver.settings import read_settings as read_web

    env = {"SORA_BASE_URL": "http://env/", "SORA_RECYCLE_AFTER": "5", "DISPLAY": ":0"}
    web = read_web({"base_url": "http://flag/", "selectors": None}, env, tmp_path, debug=False)
    assert (web.base_url, web.recycle_after, web.headless) == ("http://flag", 5, True)
    assert (web.session_file, web.selectors) == (tmp_path / "session.json", None)
    assert read_web({}, env, tmp_path, debug=True).headless is False  # a screen: show it
    assert read_web({}, {}, tmp_path, debug=True).headless is True  # no screen: headless
    assert read_web({}, {**env, "SORA_HEADLESS": "yes"}, tmp_path, debug=True).headless is True
    assert read_web({"headless": "false"}, {}, tmp_path, debug=False).headless is False
    with pytest.raises(ConfigError, match="SORA_PAGE_TIMEOUT='soon': expected a float"):
        read_web({}, {"SORA_PAGE_TIMEOUT": "soon"}, tmp_path, debug=False)
    core = resolve({"home": str(tmp_path), "headless": None, "base_url": "http://f"}, {})
    assert from_settings(core, {}).base_url == "http://f"  # the flags reach the web section


# -- the API's answers as the daemon's errors ---------------------------------------------------


def status_error(status: int, body: object, headers: dict[str, str] | None = None) -> Exception:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/images/generations")
    content = body if isinstance(body, str) else json.dumps({"error": body})
    response = httpx2.Response(status, headers=headers or {}, text=content, request=request)
    client = openai.OpenAI(api_key=KEY, base_url="http://127.0.0.1:9/v1")
    return client._make_status_error_from_response(response)


def classify(exc: Exception, model: str = "gpt-image-2") -> GenerationError:
    classifier = Classifier(
        model="gpt-image-2",
        base_url="http://user:secret@127.0.0.1:9/v1?token=t",
        key=KEY,
        timeout=300,
        env_file=".env",
        probe=lambda: True,
        probe_every=60,
    )
    return classifier.error(exc, model)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "moderation_blocked", ContentRejected),
        (400, "content_policy_violation", ContentRejected),
        (400, "invalid_value", InvalidRequest),
        (401, "invalid_api_key", CredentialsRefused),
        (403, None, AccessDenied),
        (404, "model_not_found", ModelUnavailable),
        (404, None, EndpointNotFound),
        (407, None, Unreachable),
        (429, "insufficient_quota", QuotaExceeded),
        (400, "billing_hard_limit_reached", QuotaExceeded),
        (429, "rate_limit_exceeded", ConcurrencyLimited),
        (500, None, Overloaded),
        (503, None, Overloaded),
        (409, None, Overloaded),
        (422, None, InvalidRequest),
    ],
)
def test_each_answer_has_its_family(status: int, code: str | None, kind: type) -> None:
    body = {"message": f"words of {status}", "type": "x", "param": None, "code": code}
    error = classify(status_error(status, body))
    assert type(error) is kind
    assert f"HTTP {status}: words of {status}" in error.detail


def test_a_rate_limit_waits_what_retry_after_says() -> None:
    body = {"message": "slow down", "code": "rate_limit_exceeded"}
    error = classify(status_error(429, body, {"retry-after-ms": "1500"}))
    assert isinstance(error, ConcurrencyLimited) and error.retry_after == 1.5


def test_an_html_error_page_is_named_by_its_title() -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    error = classify(status_error(502, page))
    assert isinstance(error, Overloaded)
    assert error.detail.startswith("HTTP 502: an HTML page: 502 Bad Gateway")


def test_account_problems_say_how_to_resume() -> None:
    refused = classify(status_error(401, {"message": "no", "code": "invalid_api_key"}))
    assert refused.resume.probe is not None and "OPENAI_API_KEY" in refused.resume.hint
    denied = classify(status_error(403, {"message": "Your organization must be verified"}))
    assert "settings/organization/general" in denied.resume.hint and denied.resume.probe is None
    other = classify(status_error(403, {"message": "Project does not have access"}))
    assert "the key's permissions" in other.resume.hint
    quota = classify(status_error(429, {"message": "quota", "code": "insufficient_quota"}))
    assert "billing" in quota.resume.hint


def test_an_unknown_model_named_by_a_job_is_that_jobs_fault() -> None:
    no_model = {"message": "no such model", "code": "model_not_found"}
    error = classify(status_error(404, no_model), model="gpt-image-9")
    assert isinstance(error, InvalidRequest) and "the job's model" in error.detail


def test_timeouts_and_resets_are_transient_and_say_no_credentials() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/images/generations")
    assert isinstance(classify(openai.APITimeoutError(request)), GenerationTimeout)
    reset = classify(openai.APIConnectionError(request=request))
    assert isinstance(reset, Unreachable)
    assert reset.detail.startswith("http://127.0.0.1:9/v1: ")  # no user, password, query
    assert public_url("https://u:p@host:8443/v1?k=x#f") == "https://host:8443/v1"
    assert public_url("http://127.0.0.1:80800/v1") == "http://127.0.0.1:80800/v1"  # no raise


def test_a_call_always_ends_even_when_its_failure_is_odd(tmp_path: Path) -> None:
    # A port out of range: the package takes the URL, the connection fails, and the error's
    # own message is unusual. The call must still end, with a named error.
    settings = resolve({"home": str(tmp_path), "env_file": str(tmp_path / ".env")}, {})
    env = {**ENV, "OPENAI_BASE_URL": "http://127.0.0.1:80800/v1", "SORA_OPENAI_TIMEOUT": "5"}
    backend = load("openai").create(settings, lambda: env, threading.Event())
    try:
        task = backend.submit("a fox", JobOptions())
        assert backend.finished([task], wait=30) == [task]
        with pytest.raises(GenerationError) as caught:
            backend.collect(task, JobOptions())
        assert isinstance(caught.value, Unreachable) and KEY not in caught.value.detail
    finally:
        backend.close()


def test_broken_images_are_failed_downloads_never_crashes() -> None:
    whole = io.BytesIO()
    Image.new("RGB", (8, 8)).save(whole, format="PNG")
    png = whole.getvalue()
    for broken in (png[:20], png[:-30], b"<html>oops</html>", png[:8] + b"\0" * 40):
        with pytest.raises(DownloadFailed):
            to_png(broken, "http://x")


def test_hooks_never_get_the_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "env.txt"
    script = f"import os; open({str(out)!r}, 'w').write(repr(dict(os.environ)))"
    Hook(f"{sys.executable} -c {shlex.quote(script)}", 30).run("i.png", "in.txt", "a prompt")
    seen = out.read_text()
    assert KEY not in seen and "a prompt" in seen


def test_the_key_is_redacted_from_every_detail() -> None:
    body = {"message": f"Incorrect API key provided: {KEY}. Or sk-proj****uvwx.", "code": "x"}
    error = classify(status_error(401, body))
    assert KEY not in error.detail and "uvwx" not in error.detail
    assert redact(f"key={KEY}!", KEY) == "key=[redacted key]!"


# -- the daily limit ----------------------------------------------------------------------------


def test_the_daily_limit_counts_todays_images_across_restarts(tmp_path: Path) -> None:
    today = datetime.now().strftime("%Y%m%d")
    (tmp_path / "user").mkdir()
    for name in (f"{today}_101010_aaaaa", f"user/{today}_101011_bbbbb", "20000101_000000_ccccc"):
        (tmp_path / f"{name}.png").write_bytes(b"png")
        sidecar = {"variant": 0, "usage": {"total_tokens": 1000}}
        (tmp_path / f"{name}.json").write_text(json.dumps(sidecar), encoding="utf-8")
    count = DailyCount(tmp_path, limit=3)
    assert count.count == 2
    assert count.reached(1) is None
    pause = count.reached(2)
    assert isinstance(pause, DailyLimitReached)
    assert pause.resume.after is not None and pause.resume.after <= 86401
    assert tokens(todays_images(tmp_path)) == 2000
    assert DailyCount(tmp_path, limit=0).reached(10_000) is None  # 0: no limit


def test_midnight_is_counted_from_the_local_time() -> None:
    assert seconds_to_midnight(datetime(2026, 12, 1, 23, 59, 30)) == 30


# -- the error tree's promises ------------------------------------------------------------------


def test_a_broad_except_never_swallows_a_stop() -> None:
    def step() -> None:
        try:
            raise Interrupted()
        except Exception:  # what careless code around a step would write
            pytest.fail("Interrupted was caught by `except Exception`")

    with pytest.raises(Interrupted):
        step()


def test_the_web_backends_names_are_the_cores_families() -> None:
    assert issubclass(SessionExpired, CredentialsRefused)
    assert issubclass(PageError, Unreachable)


def test_a_missing_key_names_the_variable_and_the_file(tmp_path: Path) -> None:
    settings = resolve({"home": str(tmp_path), "env_file": str(tmp_path / ".env")}, {})
    with pytest.raises(GenerationError) as caught:
        load("openai").create(settings, dict, threading.Event())
    assert "OPENAI_API_KEY is not set" in caught.value.detail
    assert str(tmp_path / ".env") in caught.value.detail

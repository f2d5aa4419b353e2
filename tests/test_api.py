"""The HTTP API end to end: a real daemon process (``watcher.py run`` with ``SORA_HTTP`` on port
0) against the OpenAI stand-in, httpx as the client, real files in a real home folder.

One stand-in serves the whole module. The tests that only submit and read share one daemon
(``service``); those that need settings of their own (a token, webhooks) or that change the
daemon's state (a pause, retries of every failed job) start their own (``start``).
Waits are on a condition polled with a deadline (the job's state, a line of the log, a
delivery that arrived), never on a sleep followed by an assertion.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpcore
import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from openai_standin import ImagesStandIn
from sora_watcher.backends.base import MAX_STEPS
from standin_kit.process import daemon_env, run_watcher
from tests.conftest import Daemon

pytestmark = pytest.mark.e2e

KEY = "sk-standin-api-0123456789abcdefSECRET"
TOKEN = "api-token-0123456789abcdefghijklmnopqrstuv"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"sora-watcher webhook test secret").decode()
MAX_BYTES = 8192  # SORA_MAX_INPUT_BYTES: small, for the 413; a chart job still fits
DATA = Path(__file__).parent / "data"
HTTP_LINE = r"HTTP API and dashboard on http://\S+:(\d+)/"
JOB_ID = re.compile(r"job_[0-9a-f]{20}")
PNG = b"\x89PNG\r\n\x1a\n"
POLL = 0.05  # seconds between two looks at a condition
ENDED = ("done", "failed")

# What every daemon of these tests runs with unless its test says otherwise.
SETTINGS = {
    "OPENAI_API_KEY": KEY,
    "SORA_WORKER_ID": "w1",
    "SORA_HTTP": "127.0.0.1:0",
    "SORA_SETTLE_SECONDS": "0.05",
    "SORA_RETRY_DELAY": "0.2",
    "SORA_PAUSE_SECONDS": "0.5",
    "SORA_MAX_INPUT_BYTES": str(MAX_BYTES),
    "SORA_WEBHOOK_RETRY": "0.2",
}

T = TypeVar("T")


def until(check: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    """``check()``'s first true value, looked at every POLL seconds until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


# -- the daemon and its client -------------------------------------------------------------------


@dataclass
class Service:
    """A daemon process with its HTTP service, and a client for it."""

    daemon: Daemon
    home: Path
    port: int
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.client.close()
        self.daemon.stop()

    def submit(self, body: dict[str, Any], **headers: str) -> str:
        answer = self.client.post("/v1/jobs", json=body, headers=headers)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.client.get(f"/v1/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def wait_ended(self, job_id: str, timeout: float = 30) -> dict[str, Any]:
        """The job once done or failed (the daemon's log in the message if it never ends)."""

        def ended() -> dict[str, Any] | None:
            job = self.job(job_id)
            # The record ends a moment before the input leaves processing/: wait for both.
            moving = any((self.home / "processing").rglob(f"{job_id}--*"))
            return job if job["state"] in ENDED and not moving else None

        try:
            return until(ended, f"{job_id} to end")
        except AssertionError as exc:
            raise AssertionError(self.daemon.failure(str(exc))) from None

    def raw_get(self, target: bytes) -> tuple[int, bytes]:
        """GET a request target as it is written: httpx would resolve ``..`` before sending."""
        url = httpcore.URL(scheme=b"http", host=b"127.0.0.1", port=self.port, target=target)
        answer = httpcore.request("GET", url, headers={"Host": f"127.0.0.1:{self.port}"})
        return answer.status, answer.content

    def processed(self, job_id: str) -> list[Path]:
        return sorted((self.home / "processed").glob(f"{job_id}--*"))


def env_for(home: Path, api: ImagesStandIn, **extra: str) -> dict[str, str]:
    return daemon_env(home, api.base_url, "openai", **{**SETTINGS, **extra})


def start_daemon(home: Path, env: dict[str, str]) -> Service:
    (home / "inbox").mkdir(exist_ok=True)
    daemon = Daemon(home, env, "run")
    try:
        port = int(daemon.expect(HTTP_LINE, timeout=60)[1])
        daemon.ready(timeout=60)
    except BaseException:
        daemon.stop()
        raise
    return Service(daemon, home, port)


@pytest.fixture(scope="module")
def api_server() -> Iterator[ImagesStandIn]:
    with ImagesStandIn(latency=0.05, api_key=KEY).start() as server:
        yield server


@pytest.fixture
def api(api_server: ImagesStandIn) -> Iterator[ImagesStandIn]:
    api_server.clear()
    api_server.reset_calls()
    yield api_server
    api_server.clear()


@pytest.fixture(scope="module")
def service(
    api_server: ImagesStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One daemon shared by the tests that submit and read, and change nothing else."""
    home = tmp_path_factory.mktemp("shared")
    started = start_daemon(home, env_for(home, api_server))
    yield started
    started.close()


@pytest.fixture
def start(api: ImagesStandIn, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start a daemon of the test's own in ``tmp_path`` (settings over SETTINGS); stopped after."""
    started: list[Service] = []

    def starter(**extra: str) -> Service:
        started.append(start_daemon(tmp_path, env_for(tmp_path, api, **extra)))
        return started[-1]

    yield starter
    for one in started:
        one.close()


def calls_for(api: ImagesStandIn, text: str) -> int:
    return sum((call.prompt or "") == text for call in api.calls)


def sidecars_of(service: Service, prompt: str) -> list[Path]:
    """The sidecars in images/ of the images made for ``prompt``: one per image."""
    found = (service.home / "images").glob("*.json")
    return [path for path in found if json.loads(path.read_text("utf-8"))["prompt"] == prompt]


# -- submitting and following a job --------------------------------------------------------------


def test_a_submitted_job_is_followed_to_its_images(service: Service, api: ImagesStandIn) -> None:
    prompts = ["a red fox in the snow", "a blue heron at dawn"]
    answer = service.client.post("/v1/jobs", json={"prompts": prompts})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    job_id = accepted["id"]
    assert JOB_ID.fullmatch(job_id)
    assert accepted["status_url"] == f"/v1/jobs/{job_id}" == answer.headers["location"]
    assert accepted["state"] == "queued"

    job = service.wait_ended(job_id)
    assert job["state"] == "done" and job["runs"] == 1 and job["error"] is None
    assert job["source"] == "api" and job["finished_at"] is not None
    assert [p["text"] for p in job["prompts"]] == prompts
    for prompt in job["prompts"]:
        [image] = prompt["images"]
        assert prompt["state"] == "done"
        assert image["url"] == "/v1/images/" + image["path"]
        assert image["sidecar"]["prompt"] == prompt["text"]
        assert image["sidecar"]["backend"] == "openai"
        fetched = service.client.get(image["url"])
        assert fetched.status_code == 200
        assert fetched.headers["content-type"] == "image/png"
        assert fetched.content.startswith(PNG)
        assert fetched.content == (service.home / "images" / image["path"]).read_bytes()
        sidecar = service.client.get(image["url"].removesuffix(".png") + ".json")
        assert sidecar.status_code == 200 and sidecar.json() == image["sidecar"]
    assert len(service.processed(job_id)) == 1
    assert sorted(call.prompt or "" for call in api.calls) == sorted(prompts)


def test_the_same_idempotency_key_makes_one_job(service: Service, api: ImagesStandIn) -> None:
    key, text = str(uuid.uuid4()), "a quiet harbour at night"
    body = {"prompt": text, "variants": 2}
    first = service.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    again = service.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (202, 200)
    job_id = first.json()["id"]
    assert again.json()["id"] == job_id and again.headers["location"] == f"/v1/jobs/{job_id}"

    job = service.wait_ended(job_id)
    assert job["state"] == "done"
    [prompt] = job["prompts"]
    assert len(prompt["images"]) == 2
    assert len(service.processed(job_id)) == 1
    assert calls_for(api, text) == 1  # one call (n=2), not one per request
    assert len(sidecars_of(service, text)) == 2

    later = service.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
    assert later.status_code == 200 and later.json()["id"] == job_id
    assert later.json()["state"] == "done"
    other = service.client.post(
        "/v1/jobs", json={**body, "variants": 1}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]
    assert len(service.processed(job_id)) == 1 and calls_for(api, text) == 1


def test_a_chart_job_gives_the_users_latest_image(service: Service, api: ImagesStandIn) -> None:
    chart = json.loads((DATA / "theme_alice.json").read_text("utf-8"))
    job_id = service.submit({"chart": chart, "user": "alice"})
    job = service.wait_ended(job_id)
    assert job["state"] == "done", job
    assert job["name"] == "theme_alice.json"

    answer = service.client.get("/v1/users/alice/latest")
    assert answer.status_code == 200, answer.text
    latest = answer.json()
    assert latest["user"] == "alice"
    [call] = api.calls
    assert latest["prompt"] and latest["prompt"] == call.prompt
    image = latest["image"]
    assert image["path"].startswith("alice/")
    assert image["path"] == job["prompts"][0]["images"][0]["path"]
    fetched = service.client.get(image["url"])
    assert fetched.status_code == 200 and fetched.content.startswith(PNG)

    assert service.client.get("/v1/users/bob/latest").status_code == 404
    assert service.client.get("/v1/users/bad name!/latest").status_code in (404, 422)


def test_the_list_is_newest_first_and_filtered(service: Service, api: ImagesStandIn) -> None:
    texts = ["a list's first", "a list's second [fault:moderation_blocked]", "a list's third"]
    first, second, third = (service.submit({"prompt": text}) for text in texts)
    states = [service.wait_ended(job_id)["state"] for job_id in (first, second, third)]
    assert states == ["done", "failed", "done"]

    def listed(**query: str | int) -> list[dict[str, Any]]:
        answer = service.client.get("/v1/jobs", params=query)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["jobs"])

    done = listed(state="done", limit=2)
    assert [job["id"] for job in done] == [third, first]
    assert all(job["state"] == "done" for job in done)
    [failed] = listed(state="failed", limit=1)
    assert failed["id"] == second and failed["error"]["detail"]
    assert [job["id"] for job in listed(limit=3)] == [third, second, first]
    for wrong in ({"limit": 0}, {"limit": 501}, {"state": "lost"}):
        assert service.client.get("/v1/jobs", params=wrong).status_code == 422


# -- what the service refuses --------------------------------------------------------------------


def test_images_are_served_from_images_and_nowhere_else(service: Service) -> None:
    home, images = service.home, service.home / "images"
    images.mkdir(exist_ok=True)
    secret = PNG + b" the secret outside images/"
    (home / "secret.png").write_bytes(secret)
    (home / "outside").mkdir(exist_ok=True)
    (home / "outside" / "x.png").write_bytes(secret)
    (images / "link.png").unlink(missing_ok=True)
    (images / "link.png").symlink_to(home / "secret.png")
    (images / "linked").unlink(missing_ok=True)
    (images / "linked").symlink_to(home / "outside", target_is_directory=True)
    (images / "notes.txt").write_text("not an image")
    absolute = str(home / "secret.png").encode()

    targets = [
        b"/v1/images/../secret.png",
        b"/v1/images/%2e%2e/secret.png",
        b"/v1/images/%2E%2E%2Fsecret.png",
        b"/v1/images/..%5Csecret.png",
        b"/v1/images/" + absolute,
        b"/v1/images/" + absolute.replace(b"/", b"%2F"),
        b"/v1/images/link.png",
        b"/v1/images/linked/x.png",
        b"/v1/images/./link.png",
        b"/v1/images/notes.txt",
        b"/v1/images/",
    ]
    for target in targets:
        status, body = service.raw_get(target)
        assert status == 404, (target, status)
        assert b"secret" not in body, target


def test_malformed_ids_and_unknown_jobs_are_4xx_never_500(service: Service) -> None:
    for target in (b"/v1/jobs/job_xyz", b"/v1/jobs/JOB_" + b"0" * 20, b"/v1/jobs/..%2F..%2Fetc"):
        status, _ = service.raw_get(target)
        assert status in (404, 422), (target, status)
    assert service.client.post("/v1/jobs/not-an-id/retry").status_code == 422
    unknown = "job_" + "0" * 20
    assert service.client.get(f"/v1/jobs/{unknown}").status_code == 404
    assert service.client.post(f"/v1/jobs/{unknown}/retry").status_code == 404
    answer = service.client.post("/v1/jobs", json={"prompt": "x", "colour": "red"})
    assert answer.status_code == 422 and answer.json()["field"] == "colour"
    too_many = service.client.post("/v1/jobs", json={"prompt": "x", "steps": MAX_STEPS + 1})
    assert too_many.status_code == 422 and too_many.json()["field"] == "steps"
    assert service.client.post("/v1/jobs", content=b"{not json").status_code == 422


def over_the_limit() -> bytes:
    body = json.dumps({"prompt": "a long one " * (MAX_BYTES // 5)}).encode()
    assert len(body) > MAX_BYTES
    return body


def queued(service: Service) -> int:
    return len(list((service.home / "records").glob("job_*.json")))


def test_a_body_over_the_limit_is_refused_by_its_length(service: Service) -> None:
    before = queued(service)
    answer = service.client.post(
        "/v1/jobs", content=over_the_limit(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert "SORA_MAX_INPUT_BYTES" in answer.json()["detail"]
    assert queued(service) == before


def test_a_streamed_body_over_the_limit_is_refused(service: Service) -> None:
    body, before = over_the_limit(), queued(service)

    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    answer = service.client.post(
        "/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert queued(service) == before
    assert answer.status_code == 413, answer.text
    assert "SORA_MAX_INPUT_BYTES" in answer.json()["detail"]


def test_without_a_token_only_loopback_host_names_are_answered(service: Service) -> None:
    # A web page that rebinds its own name to 127.0.0.1 sends its own name as Host.
    refused = service.client.get("/v1/jobs", headers={"Host": "evil.example"})
    assert refused.status_code == 421
    assert service.client.get("/v1/jobs", headers={"Host": "localhost"}).status_code == 200
    forged = service.client.post(
        "/v1/jobs", json={"prompt": "x"}, headers={"Origin": "http://evil.example"}
    )
    assert forged.status_code == 403


def test_a_token_guards_the_api_and_is_required_off_loopback(
    api: ImagesStandIn, start: Callable[..., Service], tmp_path: Path
) -> None:
    refused = run_watcher(
        tmp_path, env_for(tmp_path, api, SORA_HTTP="0.0.0.0:0"), "run", timeout=60
    )
    assert refused.returncode == 64, refused.stdout + refused.stderr
    assert "SORA_API_TOKEN" in refused.stderr
    assert not (tmp_path / "processing").exists()  # refused before anything started

    service = start(SORA_HTTP="0.0.0.0:0", SORA_API_TOKEN=TOKEN)
    client = service.client
    missing = client.get("/v1/jobs")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in missing.text
    wrong = client.get("/v1/jobs", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/v1/jobs", headers=right).status_code == 200
    assert client.post("/v1/jobs", json={"prompt": "x"}).status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=right).status_code == 200
    assert client.get("/healthz").json() == {"ok": True}
    assert client.get("/readyz").status_code == 200
    # With a token, any Host may carry it: the token is the guard.
    assert client.get("/v1/jobs", headers={**right, "Host": "watcher.example"}).status_code == 200
    service.daemon.stop()
    logs = "\n".join(p.read_text("utf-8") for p in (tmp_path / "logs").glob("*.log"))
    assert TOKEN not in "\n".join(service.daemon.output) + logs


def test_readyz_says_why_the_queue_is_paused(
    api: ImagesStandIn, start: Callable[..., Service]
) -> None:
    service = start()
    ready = service.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["state"] == "idle"
    api.arm("invalid_api_key", count=None)
    job_id = service.submit({"prompt": "a paused meadow"})

    def not_ready() -> httpx.Response | None:
        answer = service.client.get("/readyz")
        return answer if answer.status_code == 503 else None

    paused = until(not_ready, "/readyz to say 503")  # once the refusal is met
    body = paused.json()
    assert body["ready"] is False and body["state"] == "paused"
    assert body["reason"].startswith("CredentialsRefused")
    assert KEY not in paused.text and KEY[-8:] not in paused.text
    assert service.client.get("/healthz").status_code == 200  # up, only not taking work

    api.clear()
    assert service.wait_ended(job_id)["state"] == "done"
    until(lambda: service.client.get("/readyz").status_code == 200, "ready again")


# -- retries -------------------------------------------------------------------------------------


def test_a_failed_job_is_retried_through_the_api(
    api: ImagesStandIn, start: Callable[..., Service]
) -> None:
    service = start()
    api.arm("moderation_blocked", count=1)  # the first call is refused, the next one made
    job_id = service.submit({"prompt": "a lighthouse in a storm"})
    failed = service.wait_ended(job_id)
    assert failed["state"] == "failed" and failed["runs"] == 1
    assert "ContentRejected" in failed["error"]["detail"]
    assert "reword" in failed["error"]["what_to_do"]
    [prompt] = failed["prompts"]
    assert prompt["error"]["class"] == "ContentRejected" and prompt["error"]["what_to_do"]

    answer = service.client.post(f"/v1/jobs/{job_id}/retry")
    assert answer.status_code == 202 and answer.json()["id"] == job_id
    assert answer.json()["state"] == "queued"
    done = service.wait_ended(job_id)
    assert done["state"] == "done" and done["runs"] == 2 and done["error"] is None
    assert len(done["prompts"][0]["images"]) == 1
    again = service.client.post(f"/v1/jobs/{job_id}/retry")
    assert again.status_code == 409 and "only a failed job" in again.json()["detail"]

    # Two prompts, one refused every time: a retry makes only the one that failed.
    good, bad = "a calm sea", "a storm [fault:moderation_blocked]"
    pair = service.submit({"prompts": [good, bad]})
    first_run = service.wait_ended(pair)
    assert first_run["state"] == "failed"
    assert [p["state"] for p in first_run["prompts"]] == ["done", "failed"]
    assert service.client.post(f"/v1/jobs/{pair}/retry").status_code == 202
    second_run = service.wait_ended(pair)  # queued again at once: this is its second end
    assert second_run["state"] == "failed" and second_run["runs"] == 2
    assert calls_for(api, good) == 1 and calls_for(api, bad) == 2
    assert second_run["prompts"][0]["images"] == first_run["prompts"][0]["images"]
    assert len(sidecars_of(service, good)) == 1


def test_failed_jobs_are_retried_from_the_command_line(
    api: ImagesStandIn, start: Callable[..., Service], tmp_path: Path
) -> None:
    service = start()
    env = env_for(tmp_path, api)
    api.arm("moderation_blocked", count=2)
    one = service.submit({"prompt": "the first refused"})
    assert service.wait_ended(one)["state"] == "failed"
    two = service.submit({"prompt": "the second refused"})
    assert service.wait_ended(two)["state"] == "failed"

    by_id = run_watcher(tmp_path, env, "retry", one, timeout=60)
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout.startswith(f"{one} -> {one}--")
    retried = service.wait_ended(one)
    assert retried["state"] == "done" and retried["runs"] == 2
    assert service.job(two)["state"] == "failed"  # only the one asked for

    every = run_watcher(tmp_path, env, "retry", "--all", timeout=60)
    assert every.returncode == 0, every.stderr
    assert f"{two}--" in every.stdout and one not in every.stdout
    done = service.wait_ended(two)
    assert done["state"] == "done" and done["runs"] == 2

    finished = run_watcher(tmp_path, env, "retry", one, timeout=60)
    assert finished.returncode == 1 and "only a failed job" in finished.stderr


# -- webhooks ------------------------------------------------------------------------------------


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int  # the status the receiver answered it with

    def verified(self) -> dict[str, Any]:
        """The payload, once its Standard Webhooks signature is checked (raises if wrong)."""
        return dict(Webhook(WEBHOOK_SECRET).verify(self.body, self.headers))


class Receiver:
    """A webhook receiver on 127.0.0.1, port 0, answering ``status``; it may be bound before it
    listens (``listening=False``): a connection is then refused, as by a receiver that is down."""

    def __init__(self, listening: bool = True) -> None:
        self.status = 200
        self.attempts: list[Delivery] = []  # every POST, whatever it was answered
        self._arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.status
                delivery = Delivery(self.path, headers, self.rfile.read(length), status)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                with receiver._arrived:
                    receiver.attempts.append(delivery)
                    receiver._arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), Handler, bind_and_activate=False
        )
        self.server.server_bind()
        self.thread: threading.Thread | None = None
        if listening:
            self.listen()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def listen(self) -> None:
        self.server.server_activate()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count: int, timeout: float = 30, status: int = 200) -> list[Delivery]:
        """The first ``count`` attempts answered ``status``, once they arrived."""

        def answered() -> list[Delivery]:
            return [d for d in self.attempts if d.answered == status]

        with self._arrived:
            arrived = self._arrived.wait_for(lambda: len(answered()) >= count, timeout)
            assert arrived, f"{len(answered())} of {count} webhook(s) in {timeout:g}s"
            return answered()[:count]

    def close(self) -> None:
        if self.thread is not None:
            self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def down_receiver() -> Iterator[Receiver]:
    server = Receiver(listening=False)
    yield server
    server.close()


def outbox_empty(service: Service) -> bool:
    return not list((service.home / "outbox").glob("msg_*.json"))


def test_a_jobs_end_is_posted_signed_to_its_callback_and_the_webhook_url(
    start: Callable[..., Service], receiver: Receiver
) -> None:
    service = start(SORA_WEBHOOK_URL=receiver.url("/hook"), SORA_WEBHOOK_SECRET=WEBHOOK_SECRET)
    job_id = service.submit({"prompt": "a harbour told", "callback_url": receiver.url("/own")})
    deliveries = receiver.wait(2)
    assert sorted(d.path for d in deliveries) == ["/hook", "/own"]
    assert {d.headers["webhook-id"] for d in deliveries} == {f"msg_{job_id}_1"}
    for delivery in deliveries:
        payload = delivery.verified()
        assert payload["type"] == "job.done"
        assert payload["data"]["id"] == job_id and payload["data"]["state"] == "done"
        assert payload["data"]["prompts"][0]["images"]
    assert service.job(job_id)["state"] == "done"
    until(lambda: outbox_empty(service), "the outbox to empty")
    with pytest.raises(WebhookVerificationError):  # the check above does check something
        replace(deliveries[0], body=deliveries[0].body + b" ").verified()
    assert WEBHOOK_SECRET not in "\n".join(service.daemon.output)


def test_a_receiver_that_was_down_gets_the_webhook_later(
    start: Callable[..., Service], down_receiver: Receiver
) -> None:
    service = start(SORA_WEBHOOK_URL=down_receiver.url("/hook"), SORA_WEBHOOK_SECRET=WEBHOOK_SECRET)
    job_id = service.submit({"prompt": "a late letter"})
    service.daemon.expect(rf"webhook for {job_id} .* not delivered")
    assert not outbox_empty(service)
    down_receiver.listen()
    [delivery] = down_receiver.wait(1)
    assert delivery.verified()["data"]["id"] == job_id
    until(lambda: outbox_empty(service), "the outbox to empty")


def test_a_pending_webhook_survives_kill_9(
    start: Callable[..., Service], receiver: Receiver, tmp_path: Path
) -> None:
    receiver.status = 500  # refused at first: the delivery stays in outbox/
    settings = {"SORA_WEBHOOK_URL": receiver.url("/hook"), "SORA_WEBHOOK_SECRET": WEBHOOK_SECRET}
    first = start(**settings)
    job_id = first.submit({"prompt": "a letter through a crash"})
    [refused] = receiver.wait(1, status=500)
    first.daemon.process.kill()
    first.daemon.process.wait(timeout=10)
    assert list((tmp_path / "outbox").glob(f"msg_{job_id}_1.*.json"))

    receiver.status = 200
    second = start(**settings)
    [delivered] = receiver.wait(1)
    assert delivered.headers["webhook-id"] == refused.headers["webhook-id"] == f"msg_{job_id}_1"
    payload = delivered.verified()
    assert payload["type"] == "job.done" and payload["data"]["id"] == job_id
    job = second.job(job_id)
    assert job["state"] == "done" and job["runs"] == 1  # the job was not made again
    until(lambda: outbox_empty(second), "the outbox to empty")

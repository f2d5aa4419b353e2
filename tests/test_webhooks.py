"""The outbox: webhooks signed as Standard Webhooks says, sent to real HTTP receivers on
127.0.0.1, retried on a schedule (checked with a fake clock), kept when they cannot be sent,
and never lost across a restart."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from standardwebhooks import Webhook

from sora_watcher import outbox as outbox_module
from sora_watcher.outbox import Outbox, counts, signed
from sora_watcher.records import JobStatus, Record, new_id
from sora_watcher.service_settings import ServiceSettings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the specification's example secret
SERVICE = ServiceSettings(
    http=None,
    api_token=None,
    webhook_url=None,
    webhook_secret=SECRET,
    webhook_retry=5.0,
    webhook_max_age=86400.0,
    notify=(),
    thumbnails=Path(".thumbnails"),
)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver: answers each POST with the next of ``answers`` (then 200), keeps
    what it got, and sets ``delivered`` on its first 2xx."""

    answers: list[int] = field(default_factory=list)
    port: int = 0
    got: list[Received] = field(default_factory=list)
    delivered: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.got.append(Received(dict(self.headers.items()), body))
                status = receiver.answers.pop(0) if receiver.answers else 200
                answer = b"x" * 300 if status >= 300 else b"ok"
                self.send_response(status)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                if status < 300:
                    receiver.delivered.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    """Receivers made by the test (append them), closed after it."""
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def receiver(made: list[Receiver], *answers: int, port: int = 0) -> Receiver:
    made.append(Receiver(list(answers), port))
    return made[-1]


class Clock:
    """A clock that moves only when told: starts at the real time, so that signatures stay
    within the receivers' five minutes."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def ended(callback_url: str | None = None, state: JobStatus = JobStatus.DONE) -> Record:
    return Record(new_id(), "prompts.txt", "api", state=state, runs=1, callback_url=callback_url)


def free_port() -> int:
    """A port nothing listens on (for now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_delivery_is_signed_and_carries_the_job(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers)
    box = Outbox(tmp_path, SERVICE)
    record = ended(hook.url, JobStatus.FAILED)
    job = {**record.to_dict(), "note": "é ✓"}  # not ASCII: the signature covers UTF-8

    paths = box.announce(record, job)
    assert [p.name for p in paths] == [f"msg_{record.id}_1.0.json"]
    assert box.deliver_due() is None

    (got,) = hook.got
    message = Webhook(SECRET).verify(got.body, got.headers)
    assert message["type"] == "job.failed"
    assert message["data"] == job
    assert got.headers["webhook-id"] == f"msg_{record.id}_1"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == "sora-watcher"
    assert not paths[0].exists()
    assert box.counts() == {"pending": 0, "failed": 0}
    assert box.delivered["delivered"] == 1


@pytest.mark.parametrize("secret", [SECRET, SECRET.removeprefix("whsec_")])
def test_both_forms_of_the_secret_sign_alike(
    tmp_path: Path, receivers: list[Receiver], secret: str
) -> None:
    hook = receiver(receivers)
    box = Outbox(tmp_path, replace(SERVICE, webhook_secret=secret, webhook_url=hook.url))
    box.announce(ended(), {"id": 1})
    box.deliver_due()
    assert Webhook(SECRET).verify(hook.got[0].body, hook.got[0].headers)["data"] == {"id": 1}


@pytest.mark.parametrize("secret", ["my-password!", "whsec_abcde", "whsec_"])
def test_a_secret_the_library_cannot_use_is_refused_unquoted(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValueError, match="SORA_WEBHOOK_SECRET") as refused:
        Outbox(tmp_path, replace(SERVICE, webhook_secret=secret))
    body = secret.removeprefix("whsec_")
    assert not body or body not in str(refused.value)


def test_without_a_secret_the_id_and_timestamp_still_go(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers)
    service = replace(SERVICE, webhook_secret=None, webhook_url=hook.url)
    assert not signed(service) and signed(SERVICE)
    box = Outbox(tmp_path, service)
    record = ended()
    box.announce(record, {"id": record.id})
    box.deliver_due()

    (got,) = hook.got
    assert got.headers["webhook-id"] == f"msg_{record.id}_1"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    assert "webhook-signature" not in {key.lower() for key in got.headers}
    assert got.json()["data"] == {"id": record.id}


def test_refused_twice_then_taken_on_the_schedule(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers, 503, 503)
    clock = Clock()
    box = Outbox(tmp_path, replace(SERVICE, webhook_url=hook.url), clock)
    (path,) = box.announce(ended(), {"id": 1})
    sent_at = [clock.now]

    first = box.deliver_due()
    assert first is not None and 4.5 <= first <= 5.5  # 5 s +/- 10 %
    kept = json.loads(path.read_text("utf-8"))
    assert kept["attempts"] == 1 and kept["last_error"] == "HTTP 503: " + "x" * 200

    clock.now += first - 0.1
    remaining = box.deliver_due()  # not due yet: nothing sent
    assert remaining is not None and remaining == pytest.approx(0.1, abs=1e-3)
    assert len(hook.got) == 1

    clock.now += remaining
    sent_at.append(clock.now)
    second = box.deliver_due()
    assert second is not None and 22.5 <= second <= 27.5  # 25 s +/- 10 %

    clock.now += second
    sent_at.append(clock.now)
    assert box.deliver_due() is None
    assert not path.exists()
    assert len(hook.got) == 3
    assert len({got.headers["webhook-id"] for got in hook.got}) == 1
    # Each attempt is signed with its own time, and verifies.
    assert [int(got.headers["webhook-timestamp"]) for got in hook.got] == [
        int(at) for at in sent_at
    ]
    assert Webhook(SECRET).verify(hook.got[2].body, hook.got[2].headers)["data"] == {"id": 1}
    assert box.delivered == {"delivered": 1, "retry": 2, "failed": 0}


def test_the_schedule_grows_fivefold_up_to_an_hour() -> None:
    waits = [outbox_module.delay(SERVICE, attempts) for attempts in range(1, 9)]
    expected = [5, 25, 125, 625, 3125, 3600, 3600, 3600]
    for wait, mean in zip(waits, expected, strict=True):
        assert 0.9 * mean <= wait <= 1.1 * mean


def test_a_receiver_down_gets_it_when_it_comes_up(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    port = free_port()
    service = replace(SERVICE, webhook_retry=0.05, webhook_url=f"http://127.0.0.1:{port}/hook")
    box = Outbox(tmp_path, service)
    stop = threading.Event()
    box.start(stop)
    try:
        (path,) = box.announce(ended(), {"id": 1})
        wait_until(lambda: box.delivered["retry"] >= 1)  # refused while nothing listens
        assert "ConnectError" in json.loads(path.read_text("utf-8"))["last_error"]

        hook = receiver(receivers, port=port)
        assert hook.delivered.wait(30)  # the next retry may be 6 s away (0.05 s x 5 x 5 x 5)
        wait_until(lambda: not path.exists())
        assert box.counts() == {"pending": 0, "failed": 0}
    finally:
        stop.set()
        box.close()


def test_past_the_maximum_age_it_is_kept_with_the_reason(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers, *[500] * 10)
    clock = Clock()
    service = replace(SERVICE, webhook_url=hook.url, webhook_max_age=60)
    box = Outbox(tmp_path, service, clock)
    record = ended()
    (path,) = box.announce(record, {"id": 1})
    start = clock.now

    while (wait := box.deliver_due()) is not None:
        clock.now += wait
    # Tried at 0, 5 and 30 s, then once more when the 60 s were up, not later.
    assert len(hook.got) == 4
    assert clock.now == pytest.approx(start + 60)

    kept = json.loads((tmp_path / "failed" / path.name).read_text("utf-8"))
    assert kept["attempts"] == 4
    assert kept["last_error"] == "HTTP 500: " + "x" * 200
    assert kept["id"] == f"msg_{record.id}_1"
    assert not path.exists()
    assert box.counts() == counts(tmp_path) == {"pending": 0, "failed": 1}
    assert box.delivered["failed"] == 1


def test_a_receiver_that_says_gone_is_not_asked_again(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers, 410)
    box = Outbox(tmp_path, replace(SERVICE, webhook_url=hook.url), Clock())
    (path,) = box.announce(ended(), {"id": 1})
    assert box.deliver_due() is None  # nothing left to try
    assert len(hook.got) == 1
    assert json.loads((tmp_path / "failed" / path.name).read_text("utf-8"))["attempts"] == 1


def test_announcing_the_same_end_twice_keeps_one_file_per_receiver(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    own, everyone = receiver(receivers), receiver(receivers)
    box = Outbox(tmp_path, replace(SERVICE, webhook_url=everyone.url))
    record = ended(own.url)

    first = box.announce(record, {"id": 1})
    again = box.announce(record, {"id": 1})
    assert first == again
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        f"msg_{record.id}_1.0.json",
        f"msg_{record.id}_1.1.json",
    ]
    assert counts(tmp_path) == {"pending": 2, "failed": 0}

    box.deliver_due()
    assert len(own.got) == len(everyone.got) == 1
    assert own.got[0].headers["webhook-id"] == everyone.got[0].headers["webhook-id"]


def test_nobody_to_tell_writes_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path, replace(SERVICE, webhook_url=None))
    assert box.announce(ended(), {"id": 1}) == []
    assert box.deliver_due() is None


def test_a_restart_delivers_what_was_left(tmp_path: Path, receivers: list[Receiver]) -> None:
    hook = receiver(receivers)
    before = Outbox(tmp_path, replace(SERVICE, webhook_url=hook.url))
    before.announce(ended(), {"id": 1})
    before.close()  # the daemon stopped before sending
    assert not hook.got

    after = Outbox(tmp_path, replace(SERVICE, webhook_url=hook.url))
    stop = threading.Event()
    after.start(stop)
    try:
        assert hook.delivered.wait(5)
        assert hook.got[0].json()["data"] == {"id": 1}
        wait_until(lambda: after.counts() == {"pending": 0, "failed": 0})
    finally:
        stop.set()
        after.close()


def test_an_unreadable_file_does_not_stop_the_others(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers)
    (tmp_path / "msg_job_0_1.0.json").write_text("not json", encoding="utf-8")
    box = Outbox(tmp_path, replace(SERVICE, webhook_url=hook.url))
    box.announce(ended(), {"id": 1})
    assert box.deliver_due() is None
    assert len(hook.got) == 1
    assert counts(tmp_path) == {"pending": 0, "failed": 1}


def test_the_logs_show_neither_the_secret_nor_the_query(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers, 503)
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    try:
        box = Outbox(tmp_path, replace(SERVICE, webhook_url=hook.url + "?token=hush"))
        box.announce(ended(), {"id": 1})
        box.deliver_due()
        box.clock = lambda: time.time() + 60
        box.deliver_due()
    finally:
        logger.remove(sink)
    text = "".join(lines)
    assert "not delivered" in text and "delivered to" in text
    assert hook.url in text
    assert "hush" not in text and SECRET.removeprefix("whsec_") not in text


def test_stopping_ends_the_thread_at_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path, SERVICE)
    stop = threading.Event()
    box.start(stop)
    started = time.monotonic()
    box.close()
    assert time.monotonic() - started < 1

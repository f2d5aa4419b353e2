"""Metrics as Prometheus reads them, and alerts as a receiver gets them through Apprise."""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

from sora_watcher import metrics
from sora_watcher.alerts import Alerts
from sora_watcher.config import Settings, resolve
from sora_watcher.folders import hold_lock
from sora_watcher.outbox import counts
from sora_watcher.server import prometheus
from sora_watcher.service import STATUS_FILE, Board

# -- alerts -------------------------------------------------------------------------------------


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that keeps the JSON bodies posted to it."""

    def __init__(self) -> None:
        received: queue.Queue[dict[str, Any]] = queue.Queue()
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.put({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def messages(self) -> list[dict[str, Any]]:
        """What arrived so far (call after Alerts.close(): everything has been sent)."""
        got = []
        while not self.received.empty():
            got.append(self.received.get())
        return got


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lines.append, format="{level} {message}", level="WARNING")
    yield lines
    logger.remove(sink)


def free_port() -> int:
    """A port nobody listens on: a receiver that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_pause_is_told_once_and_its_resume_once(receiver: Receiver) -> None:
    alerts = Alerts((f"json://127.0.0.1:{receiver.port}/hook",), "w1")
    alerts.paused("CredentialsRefused", "the session expired", "run `sora-watcher login`")
    alerts.paused("CredentialsRefused", "the session expired", "run `sora-watcher login`")
    alerts.resumed()
    alerts.close()

    pause, resume = receiver.messages()  # the second pause said nothing
    assert pause["path"] == "/hook"
    assert pause["title"] == "sora-watcher paused: CredentialsRefused"
    assert "the session expired" in pause["message"]
    assert "sora-watcher login" in pause["message"]
    assert "w1" in pause["message"]
    assert resume["title"] == "sora-watcher resumed"
    assert "CredentialsRefused" in resume["message"]
    assert "paused" in resume["message"]


def test_a_new_cause_is_told_and_a_resume_without_a_pause_is_not(receiver: Receiver) -> None:
    alerts = Alerts((f"json://127.0.0.1:{receiver.port}",), "w1")
    alerts.resumed()
    alerts.paused("RateLimited", "too many requests", None)
    alerts.paused("QuotaExceeded", "billing hard limit reached", "top the account up")
    alerts.close()

    titles = [m["title"] for m in receiver.messages()]
    assert titles == ["sora-watcher paused: RateLimited", "sora-watcher paused: QuotaExceeded"]


def test_a_receiver_that_is_down_is_logged_and_the_others_still_told(
    receiver: Receiver, warnings: list[str]
) -> None:
    down = f"json://user:s3cret@127.0.0.1:{free_port()}/x"
    alerts = Alerts((down, f"json://127.0.0.1:{receiver.port}"), "w1")
    alerts.paused("DailyLimitReached", "100 images today", None)
    alerts.resumed()  # sent after the failure: the thread is still there
    alerts.close()

    titles = [m["title"] for m in receiver.messages()]
    assert titles == ["sora-watcher paused: DailyLimitReached", "sora-watcher resumed"]
    assert len(warnings) == 2
    assert all("WARNING" in line and "json:// (URL number 1 " in line for line in warnings)
    assert not any("s3cret" in line for line in warnings)


@pytest.mark.parametrize(
    "url", ["nosuchservice://user:s3cret@host/path", "s3cret-token", "user:s3cret@x://y"]
)
def test_an_url_apprise_cannot_read_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(ValueError, match="SORA_NOTIFY") as refused:
        Alerts(("json://127.0.0.1:9/", url), "w1")
    assert "s3cret" not in str(refused.value)
    assert "number 2" in str(refused.value)


def test_without_urls_alerts_do_nothing() -> None:
    alerts = Alerts((), "w1")
    alerts.paused("CredentialsMissing", "no API key", None)
    alerts.resumed()
    alerts.close()
    assert not any(thread.name == "alerts" for thread in threading.enumerate())


# -- metrics ------------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(settings: Settings, outbox: Path) -> Samples:
    text, content_type = prometheus.render(settings, counts(outbox))
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode("utf-8"))
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return resolve({"home": str(tmp_path)}, {})


def files(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("a prompt\n", encoding="utf-8")


def test_counters_count_what_the_daemon_tells(settings: Settings, tmp_path: Path) -> None:
    before = scrape(settings, tmp_path / "outbox")
    metrics.job_ended("done")
    metrics.job_ended("failed")
    metrics.image_made(12.0)
    metrics.image_made(700.0)  # slower than the last bucket: counted in +Inf only
    metrics.prompt_failed("ContentRejected")
    metrics.webhook_attempt("retry")
    metrics.webhook_attempt("delivered")
    after = scrape(settings, tmp_path / "outbox")

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("sora_jobs_total", outcome="done") == 1
    assert grew("sora_jobs_total", outcome="failed") == 1
    assert grew("sora_images_total", outcome="made") == 2
    assert grew("sora_images_total", outcome="failed") == 1
    assert grew("sora_errors_total", error_class="ContentRejected") == 1
    assert grew("sora_webhook_deliveries_total", outcome="retry") == 1
    assert grew("sora_webhook_deliveries_total", outcome="delivered") == 1
    assert grew("sora_generation_seconds_count") == 2
    assert grew("sora_generation_seconds_sum") == 712
    assert grew("sora_generation_seconds_bucket", le="15.0") == 1
    assert grew("sora_generation_seconds_bucket", le="600.0") == 1
    assert grew("sora_generation_seconds_bucket", le="+Inf") == 2
    assert ("sora_jobs_total", frozenset({("outcome", "done")})) in before  # shown from the start


def test_the_folders_and_a_paused_worker_as_the_disk_says(
    settings: Settings, tmp_path: Path
) -> None:
    files(settings.inbox, "a.txt", "b.csv", ".c.txt.tmp")  # the last one is still being written
    worker = settings.processing / "w1"
    files(worker, "d.txt", "d.txt.state.json")  # an input and its journal
    files(settings.processed, "e.txt", "f.txt", "g.txt")
    files(settings.failed, "h.txt", "h.txt.error.txt")
    Board(worker / STATUS_FILE, state="paused", detail="CredentialsRefused: expired").save()
    lock = hold_lock(worker / ".lock")
    try:
        samples = scrape(settings, tmp_path / "outbox")
    finally:
        os.close(lock)

    depth = {f: value(samples, "sora_queue_depth", folder=f) for f in ("inbox", "processing")}
    assert depth == {"inbox": 2, "processing": 1}
    assert value(samples, "sora_queue_depth", folder="processed") == 3
    assert value(samples, "sora_queue_depth", folder="failed") == 1
    assert value(samples, "sora_daemon_up") == 1
    assert value(samples, "sora_paused") == 1
    assert value(samples, "sora_paused_info", reason="CredentialsRefused") == 1


def test_a_dead_workers_board_is_not_a_pause(settings: Settings, tmp_path: Path) -> None:
    worker = settings.processing / "w1"
    worker.mkdir(parents=True)
    Board(worker / STATUS_FILE, state="paused", detail="RateLimited: slow down").save()
    (worker / ".lock").touch()  # left behind, held by nobody

    samples = scrape(settings, tmp_path / "outbox")
    assert value(samples, "sora_daemon_up") == 0
    assert value(samples, "sora_paused") == 0
    assert not any(name == "sora_paused_info" for name, _ in samples)


def test_webhooks_waiting_come_from_the_outbox(settings: Settings, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    (outbox / "failed").mkdir(parents=True)
    for name in ("msg_a_1.0.json", "msg_b_1.0.json", "msg_b_1.1.json", ".msg_c.part"):
        (outbox / name).write_text("{}", "utf-8")
    (outbox / "failed" / "msg_d_1.0.json").write_text("{}", "utf-8")
    samples = scrape(settings, outbox)
    assert value(samples, "sora_webhooks_pending") == 3
    assert value(samples, "sora_webhooks_failed") == 1


def test_scrapes_from_several_threads_at_once(settings: Settings, tmp_path: Path) -> None:
    files(settings.inbox, "a.txt")
    with ThreadPoolExecutor(4) as pool:
        scrapes = list(pool.map(lambda _: scrape(settings, tmp_path / "outbox"), range(20)))
    assert all(value(s, "sora_queue_depth", folder="inbox") == 1 for s in scrapes)

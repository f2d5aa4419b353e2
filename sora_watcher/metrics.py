"""``GET /metrics``: what the daemon did and what it is doing, for Prometheus.

Two kinds of numbers, kept apart:

- what happened (jobs and images by outcome, generation seconds, errors by class, webhook
  deliveries): counters the daemon bumps in-process through the functions below, held in a
  registry of this module's own, never the global one, so that tests and several apps in one
  process do not clash;
- what is (queue depth per folder, paused or not and why, a worker up, webhooks waiting): read
  from the disk at scrape time, the way ``sora-watcher status`` reads it, so that the numbers
  are true even for a daemon that runs in another process. Counting folder entries is cheap;
  no image is ever opened.

``render`` builds a fresh registry per scrape (the counters, plus a collector bound to the
folders of that call): nothing is shared between scrapes, so threads calling it never meet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from sora_watcher.config import Settings
from sora_watcher.folders import LOCK_FILE, count_inputs, lock_is_held
from sora_watcher.service import STATUS_FILE, Board

# A generation takes from about a second (the API) to several minutes (a busy web app).
GENERATION_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600)

_COUNTERS = CollectorRegistry()
_JOBS = Counter("sora_jobs", "Input files finished, by outcome", ["outcome"], registry=_COUNTERS)
_IMAGES = Counter("sora_images", "Prompts finished, by outcome", ["outcome"], registry=_COUNTERS)
_GENERATION = Histogram(
    "sora_generation_seconds",
    "Seconds from sending a prompt to having its image",
    buckets=GENERATION_BUCKETS,
    registry=_COUNTERS,
)
_ERRORS = Counter(
    "sora_errors", "Prompts failed, by error class", ["error_class"], registry=_COUNTERS
)
_WEBHOOKS = Counter(
    "sora_webhook_deliveries",
    "Webhook delivery attempts, by outcome",
    ["outcome"],
    registry=_COUNTERS,
)

# Shown at 0 from the start: a rate() over a series that appears late misses its first step.
for _outcome in ("done", "failed"):
    _JOBS.labels(_outcome)
for _outcome in ("made", "failed"):
    _IMAGES.labels(_outcome)
for _outcome in ("delivered", "retry", "failed"):
    _WEBHOOKS.labels(_outcome)


def job_ended(state: str) -> None:
    """An input file ended: ``done`` (in processed/) or ``failed``."""
    _JOBS.labels(state).inc()


def image_made(seconds: float) -> None:
    """An image was made, ``seconds`` after its prompt was sent."""
    _IMAGES.labels("made").inc()
    _GENERATION.observe(seconds)


def prompt_failed(error_class: str) -> None:
    """A prompt failed for good with this error (``ContentRejected``, ``InputError``...)."""
    _IMAGES.labels("failed").inc()
    _ERRORS.labels(error_class).inc()


def webhook_attempt(outcome: str) -> None:
    """A webhook delivery was tried: ``delivered``, ``retry`` (will be tried again), ``failed``."""
    _WEBHOOKS.labels(outcome).inc()


def render(settings: Settings, webhooks: dict[str, int]) -> tuple[bytes, str]:
    """The exposition text of one scrape, and its content type. ``webhooks``: the outbox's
    counts ("pending", "failed"), read by the caller (the outbox counts here)."""
    registry = CollectorRegistry()
    registry.register(_COUNTERS)
    registry.register(Folders(settings, webhooks))
    return _generate_latest(registry), CONTENT_TYPE_LATEST


class Folders:
    """The state on disk, read when Prometheus asks."""

    def __init__(self, settings: Settings, webhooks: dict[str, int]) -> None:
        self.settings = settings
        self.webhook_counts = webhooks

    def collect(self) -> Iterator[Metric]:
        workers = sorted(p for p in self.settings.processing.glob("*") if p.is_dir())
        yield self.queue_depth(workers)
        yield from self.daemon_state(workers)
        yield from self.webhooks()

    def queue_depth(self, workers: list[Path]) -> Metric:
        depth = GaugeMetricFamily(
            "sora_queue_depth", "Input files in each state folder", labels=["folder"]
        )
        depth.add_metric(["inbox"], count_inputs(self.settings.inbox))
        depth.add_metric(["processing"], sum(count_inputs(w) for w in workers))
        depth.add_metric(["processed"], count_inputs(self.settings.processed))
        depth.add_metric(["failed"], count_inputs(self.settings.failed))
        return depth

    def daemon_state(self, workers: list[Path]) -> Iterator[Metric]:
        held = [w for w in workers if lock_is_held(w / LOCK_FILE)]
        # Only a living worker's board counts: a dead one's may still say "paused".
        boards = [b for w in held if (b := Board.load(w / STATUS_FILE)) is not None]
        # The error's class, not its words: those hold request ids and times, and each new
        # label value would be a new series.
        reasons = sorted({b.detail.partition(": ")[0] for b in boards if b.state == "paused"})
        yield GaugeMetricFamily("sora_daemon_up", "1 if a worker holds its lock", 1 if held else 0)
        yield GaugeMetricFamily(
            "sora_paused", "1 if a worker's queue is paused", 1 if reasons else 0
        )
        info = GaugeMetricFamily(
            "sora_paused_info",
            "Why the queue is paused (the error's class)",
            labels=["reason"],
        )
        for reason in reasons:  # one per cause: several workers paused alike are one series
            info.add_metric([reason], 1)
        yield info

    def webhooks(self) -> Iterator[Metric]:
        counts = self.webhook_counts
        yield GaugeMetricFamily(
            "sora_webhooks_pending", "Webhook deliveries waiting to be sent", counts["pending"]
        )
        yield GaugeMetricFamily(
            "sora_webhooks_failed", "Webhook deliveries given up on, kept", counts["failed"]
        )

"""``GET /metrics``: what the daemon did and what it is doing, in Prometheus' form.

Two kinds of numbers, kept apart:

- what happened (jobs and images by outcome, generation seconds, errors by class, webhook
  deliveries): the daemon's tallies (``sora_watcher.metrics``), as counters and a histogram;
- what is (queue depth per folder, paused or not and why, a worker up, webhooks waiting): read
  from the disk at scrape time, the way ``sora-watcher status`` reads it, so that the numbers
  are true even for a daemon that runs in another process. Counting folder entries is cheap;
  no image is ever opened.

``render`` builds a fresh registry per scrape: nothing is shared between scrapes, so threads
calling it never meet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from sora_watcher import metrics
from sora_watcher.config import Settings
from sora_watcher.folders import LOCK_FILE, lock_is_held
from sora_watcher.service import STATUS_FILE, Board
from sora_watcher.status import queue_depth


def render(settings: Settings, webhooks: dict[str, int]) -> tuple[bytes, str]:
    """The exposition text of one scrape, and its content type. ``webhooks``: the outbox's
    counts ("pending", "failed")."""
    registry = CollectorRegistry()
    registry.register(Counted(metrics.snapshot()))
    registry.register(OnDisk(settings, webhooks))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class Counted:
    """The daemon's tallies since it started."""

    def __init__(self, tallies: metrics.Tallies) -> None:
        self.tallies = tallies

    def collect(self) -> Iterator[Metric]:
        t = self.tallies
        yield counter("sora_jobs", "Input files finished, by outcome", "outcome", t.jobs)
        yield counter("sora_images", "Prompts finished, by outcome", "outcome", t.images)
        yield counter("sora_errors", "Prompts failed, by error class", "error_class", t.errors)
        yield counter(
            "sora_webhook_deliveries", "Webhook delivery attempts, by outcome", "outcome",
            t.webhooks,
        )  # fmt: skip
        cumulative, buckets = 0, []
        bounds = [*(str(float(b)) for b in metrics.GENERATION_BUCKETS), "+Inf"]  # "15.0"
        for bound, count in zip(bounds, t.generation, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "sora_generation_seconds",
            "Seconds from sending a prompt to having its image",
            buckets=buckets,
            sum_value=t.generation_seconds,
        )


def counter(name: str, doc: str, label: str, values: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family


class OnDisk:
    """The state on disk, read when Prometheus asks."""

    def __init__(self, settings: Settings, webhooks: dict[str, int]) -> None:
        self.settings = settings
        self.webhook_counts = webhooks

    def collect(self) -> Iterator[Metric]:
        workers = sorted(p for p in self.settings.processing.glob("*") if p.is_dir())
        yield self.queue_depth()
        yield from self.daemon_state(workers)
        yield from self.webhooks()

    def queue_depth(self) -> Metric:
        depth = GaugeMetricFamily(
            "sora_queue_depth", "Input files in each state folder", labels=["folder"]
        )
        for folder, count in queue_depth(self.settings).items():
            depth.add_metric([folder], count)
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
            "sora_paused_info", "Why the queue is paused (the error's class)", labels=["reason"]
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

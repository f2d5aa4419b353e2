"""What the daemon counts as it works, for ``GET /metrics`` (see ``server/prometheus``).

Jobs and images by outcome, generation seconds, errors by class, webhook deliveries: tallies
the daemon bumps in-process through the functions below, cheap and thread-safe. They are
plain numbers here, with no library behind them: the daemon does not load the Prometheus
client unless the HTTP service asks for them (every daemon start, and every test's, would pay
for it otherwise). ``snapshot()`` gives a copy that the service turns into Prometheus' form.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field

# A generation takes from about a second (the API) to several minutes (a busy web app).
GENERATION_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600)


@dataclass
class Tallies:
    # Shown at 0 from the start: a rate() over a series that appears late misses its first step.
    jobs: Counter[str] = field(default_factory=lambda: Counter({"done": 0, "failed": 0}))
    images: Counter[str] = field(default_factory=lambda: Counter({"made": 0, "failed": 0}))
    errors: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(
        default_factory=lambda: Counter({"delivered": 0, "retry": 0, "failed": 0})
    )
    # Generations per bucket (not cumulative; the last one is past the largest bound).
    generation: list[int] = field(default_factory=lambda: [0] * (len(GENERATION_BUCKETS) + 1))
    generation_seconds: float = 0.0

    def copy(self) -> Tallies:
        return Tallies(
            Counter(self.jobs),
            Counter(self.images),
            Counter(self.errors),
            Counter(self.webhooks),
            list(self.generation),
            self.generation_seconds,
        )


_lock = threading.Lock()
_tallies = Tallies()


def job_ended(state: str) -> None:
    """An input file ended: ``done`` (in processed/) or ``failed``."""
    with _lock:
        _tallies.jobs[state] += 1


def image_made(seconds: float) -> None:
    """An image was made, ``seconds`` after its prompt was sent."""
    with _lock:
        _tallies.images["made"] += 1
        _tallies.generation[bisect.bisect_left(GENERATION_BUCKETS, seconds)] += 1
        _tallies.generation_seconds += seconds


def prompt_failed(error_class: str) -> None:
    """A prompt failed for good with this error (``ContentRejected``, ``InputError``...)."""
    with _lock:
        _tallies.images["failed"] += 1
        _tallies.errors[error_class] += 1


def webhook_attempt(outcome: str) -> None:
    """A webhook delivery was tried: ``delivered``, ``retry`` (will be tried again), ``failed``."""
    with _lock:
        _tallies.webhooks[outcome] += 1


def snapshot() -> Tallies:
    with _lock:
        return _tallies.copy()

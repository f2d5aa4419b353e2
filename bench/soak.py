"""5. Soak: memory of the daemon and of its browser over many generations.

A daemon (web backend, default settings) against the stand-in with a 0.05 s delay: a warm-up
input, then inputs of 10 prompts each up to 500 generations, all dropped at once. Every second
the benchmark reads, from /proc, the daemon's VmRSS and the RSS (and PSS) of every process below
it: Playwright's node driver, and Chromium's processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bench.harness import (
    SUCCESS,
    BenchError,
    Log,
    Memory,
    Result,
    StandInProcess,
    Table,
    all_finished,
    check_no_failures,
    daemon_env,
    home_folder,
    mb,
    publish_by_rename,
    setting_default,
    setting_exists,
    wait_until,
    yes_no,
)
from standin_kit.process import DaemonProcess

NAME = "soak"
FLAT_TOLERANCE = 0.10  # "flat": the end within 10 % of the start


@dataclass(frozen=True)
class Sample:
    seconds: float
    generations: int
    memory: Memory


class Sampler:
    def __init__(self, daemon: DaemonProcess, interval: float = 1.0) -> None:
        self.daemon = daemon
        self.samples: list[Sample] = []
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def take(self) -> Sample:
        sample = Sample(
            time.perf_counter() - self.started,
            self.daemon.count(SUCCESS),
            Memory.of(self.daemon.pid),
        )
        self.samples.append(sample)
        return sample

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if not self.daemon.alive():
                return
            self.take()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def drop_prompts(daemon: DaemonProcess, tag: str, count: int, per_input: int) -> set[str]:
    names = set()
    for start in range(0, count, per_input):
        name = f"{tag}-{start // per_input:03d}.txt"
        lines = [f"soak {tag} prompt {n}: a forest in fog" for n in range(start, start + per_input)]
        publish_by_rename(daemon.home / "inbox", name, "\n".join(lines[: count - start]) + "\n")
        names.add(name)
    return names


def wait_done(daemon: DaemonProcess, names: set[str], timeout: float) -> None:
    home = daemon.home
    wait_until(
        all_finished(home, names),
        timeout=timeout,
        what=f"{len(names)} inputs in processed/",
        interval=0.2,
    )
    check_no_failures(home)


def row(label: str, sample: Sample) -> list[str]:
    m = sample.memory
    return [
        label,
        str(sample.generations),
        mb(m.daemon_rss),
        mb(m.driver_rss),
        f"{mb(m.browser_rss)} ({m.browser_processes})",
        mb(m.browser_pss),
        mb(m.daemon_rss + m.driver_rss + m.browser_rss),
    ]


GROUPS: dict[str, Callable[[Memory], int]] = {
    "daemon RSS": lambda m: m.daemon_rss,
    "Playwright driver RSS": lambda m: m.driver_rss,
    "Chromium RSS, sum": lambda m: m.browser_rss,
    "Chromium PSS, sum": lambda m: m.browser_pss,
}
JUDGED = ("daemon RSS", "Playwright driver RSS", "Chromium RSS, sum")
WINDOW = 0.2  # the first and the last fifth of the soak are compared


def slope_per_100(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of kB against generations, as MB per 100 generations."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var * 100 / 1024


def judge(
    samples: list[Sample], first: int, last: int
) -> tuple[list[list[str]], bool, dict[str, float]]:
    """Mean of the first fifth against the last fifth of the soak, and the trend, per group."""
    span = last - first
    early = [s for s in samples if first <= s.generations <= first + WINDOW * span]
    late = [s for s in samples if s.generations >= last - WINDOW * span]
    during = [s for s in samples if s.generations >= first]
    rows = []
    flat = True
    growths = {}
    for label, value in GROUPS.items():
        before = sum(value(s.memory) for s in early) / max(len(early), 1)
        after = sum(value(s.memory) for s in late) / max(len(late), 1)
        change = (after - before) / before if before else 0.0
        growths[label] = change
        slope = slope_per_100([(s.generations, value(s.memory)) for s in during])
        judged = label in JUDGED
        ok = change <= FLAT_TOLERANCE
        flat = flat and (ok or not judged)
        rows.append(
            [
                label,
                mb(before),
                mb(after),
                f"{change:+.1%}",
                f"{slope:+.2f} MB",
                mb(max(value(s.memory) for s in during)),
                yes_no(ok) if judged else "(shown)",
            ]
        )
    return rows, flat, growths


def run(quick: bool, log: Log, generations: int | None = None) -> Result:
    delay = 0.05
    warmup = 2 if quick else 10
    generations = generations or (10 if quick else 500)
    per_input = 5 if quick else 10
    recycle = (
        setting_default("SORA_RECYCLE_AFTER") if setting_exists("SORA_RECYCLE_AFTER") else None
    )
    with StandInProcess(delay) as standin, home_folder(NAME, standin.base_url) as home:
        env = daemon_env(home, standin.base_url)
        with DaemonProcess(home, env, "run") as daemon:
            daemon.ready()
            sampler = Sampler(daemon)
            try:
                ready = sampler.take()
                wait_done(daemon, drop_prompts(daemon, "warmup", warmup, per_input), 120)
                start = sampler.take()
                started = time.perf_counter()
                names = drop_prompts(daemon, "soak", generations, per_input)
                wait_done(daemon, names, timeout=generations * 10 + 120)
                elapsed = time.perf_counter() - started
                end = sampler.take()
            finally:
                sampler.stop()
            if not daemon.alive():
                raise BenchError(daemon.failure("the daemon ended"))
    done = end.generations - start.generations
    if done != generations:
        raise BenchError(f"{done} generations logged, {generations} expected")
    samples = sampler.samples
    rows = [row("ready (browser up, no job yet)", ready), row("start (after warm-up)", start)]
    for quarter in (0.25, 0.5, 0.75):
        target = start.generations + quarter * generations
        at = next((s for s in samples if s.generations >= target), None)
        if at is not None and at is not end:
            rows.append(row(f"{quarter:.0%} of the soak", at))
    rows.append(row("end", end))
    trend, flat, growths = judge(samples, start.generations, end.generations)
    table = Table(
        [
            "when",
            "generations",
            "daemon RSS",
            "Playwright driver RSS",
            "Chromium RSS, sum (processes)",
            "Chromium PSS, sum",
            "total RSS",
        ],
        rows,
        title=f"{generations} generations after a warm-up of {warmup}, stand-in delay {delay:g} s",
    )
    verdict = Table(
        [
            "",
            "mean, first fifth",
            "mean, last fifth",
            "change",
            "trend per 100 generations",
            "peak",
            "within +10 %",
        ],
        trend,
        title="Flat? The first fifth of the soak against the last fifth (each spans "
        "several browser restarts), and the least-squares trend over the soak",
    )
    notes = [
        f"{generations} generations in {elapsed:.0f} s ({elapsed / generations:.2f} s each), "
        f"in inputs of {per_input} prompts; memory sampled every second from /proc "
        f"({len(samples)} samples). RSS sums count shared pages once per process; PSS "
        "shares them out and is the fairer total for Chromium.",
        f"`SORA_RECYCLE_AFTER` = {recycle} (default): the browser, its context and "
        f"Playwright's driver are restarted every {recycle} jobs"
        if recycle is not None
        else "`SORA_RECYCLE_AFTER` is not a setting of this daemon yet: one browser context "
        "for the whole run.",
    ]
    return Result(
        name=NAME,
        title="Soak",
        goal="memory flat: the daemon's, Playwright's driver's and Chromium's RSS in the last "
        "fifth of the soak within +10 % of the first fifth (after a warm-up)",
        met=yes_no(flat),
        tables=[table, verdict],
        headline=", ".join(f"{label.split(' RSS')[0]} {growths[label]:+.0%}" for label in JUDGED)
        + f" over {generations} generations",
        notes=notes,
        raw={
            "generations": generations,
            "elapsed_s": elapsed,
            "recycle_after": recycle,
            "samples": [
                {"seconds": s.seconds, "generations": s.generations, **asdict(s.memory)}
                for s in samples
            ],
        },
        quick=quick,
    )

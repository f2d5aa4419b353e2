"""6. OpenAI backend: throughput, answer-to-image time, memory and start-up, side by side.

The daemon runs with ``SORA_BACKEND=openai`` against the stand-in of the Images API
(``openai_standin``), served from this process so that its clock (``time.monotonic()``, the
system-wide CLOCK_MONOTONIC) is the benchmark's. Four measurements:

1. throughput: one input of 24 lines at ``SORA_CONCURRENCY=8`` with a 2 s latency, as a
   fraction of the limit ``concurrency / latency`` (4 images/s: 6 s at best); median of 3 runs;
2. answer to image: from the moment the stand-in writes a call's answer (its ``ended``) to the
   moment the image's sidecar ``.json`` appears in ``images/`` (the last file the daemon writes
   for an image, seen by the benchmark's own inotify reader); calls and images are matched by
   request id; 1024x1024 PNGs, their text chunks and sidecar included;
3. the daemon's RSS over 1,000 images (100 inputs of 10 lines, latency 0.05 s, concurrency 8);
4. start-up: from the process start to its ``watching`` line and to its sd_notify ``READY=1``;
   then, shown but not judged, with a one-line input waiting in inbox/ and a stand-in latency
   of 0, to that input's image (the first call waits for the ``openai`` package's import).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.harness import (
    BenchError,
    Log,
    Result,
    Table,
    all_finished,
    check_no_failures,
    daemon_env,
    home_folder,
    hwm_kib,
    mb,
    median,
    ms,
    percentile,
    rss_kib,
    wait_until,
    yes_no,
)
from bench.inotify import ARRIVED, Clock, FileEvents, TimedReader
from openai_standin import Call, ImagesStandIn
from standin_kit.process import DaemonProcess

NAME = "openai"
TITLE = "OpenAI backend"
API_KEY = "sk-standin-bench"  # the stand-in takes any key
GOAL_FRACTION = 0.95
GOAL_PUBLISH_P50 = 0.020
GOAL_RSS_KIB = 100 * 1024
FLAT_TOLERANCE = 0.10  # "flat": the last fifth within +10 % of the first fifth
WINDOW = 0.2  # the first and the last fifth of the images are compared
GOAL_READY = 1.0
SIZE = "1024x1024"  # what an input of plain prompts asks of gpt-image-2 (aspect ratio 1:1)

# -- what the benchmark watches -----------------------------------------------------------------


@contextlib.contextmanager
def arrivals_in(folder: Path, clock: Clock = time.monotonic) -> Iterator[FileEvents]:
    """Per file name, when it appeared in ``folder`` (by ``clock``, read as soon as the
    kernel's event is): a link (the published PNG) or a rename (its sidecar); the daemon's
    temporary files (dot names) left out."""
    folder.mkdir(parents=True, exist_ok=True)  # before the daemon makes it, to watch it at once
    arrivals = FileEvents(folder, ARRIVED, clock=clock, skip_hidden=True)
    try:
        yield arrivals
    finally:
        arrivals.close()


class NotifyListener(TimedReader):
    """The systemd end of sd_notify: a datagram socket whose ``READY=1`` are timed
    (``time.perf_counter()``, as ``DaemonProcess.started``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._ready: list[float] = []
        super().__init__(self._sock.fileno(), time.perf_counter, "notify")

    def _take(self, now: float) -> None:
        messages = self._sock.recv(4096).decode("utf-8", "replace").splitlines()
        if "READY=1" in messages:
            with self._lock:
                self._ready.append(now)

    def _release(self) -> None:
        self._sock.close()

    def wait_ready(self, index: int, timeout: float) -> float:
        """When the ``index``-th READY=1 (from 0) arrived, waiting for it."""

        def arrived() -> bool:
            with self._lock:
                return len(self._ready) > index

        wait_until(arrived, timeout, "READY=1")
        with self._lock:
            return self._ready[index]


# -- the daemon against the stand-in -------------------------------------------------------------


def openai_env(
    home: Path, standin: ImagesStandIn, concurrency: int, **extra: str
) -> dict[str, str]:
    """The openai backend against the in-process stand-in (the bench's own OPENAI_* variables
    are left out by the environment builder)."""
    return daemon_env(
        home,
        None,
        SORA_BACKEND="openai",
        SORA_CONCURRENCY=str(concurrency),
        OPENAI_BASE_URL=standin.base_url,
        OPENAI_API_KEY=API_KEY,
        **extra,
    )


def prompts(tag: str, count: int) -> list[str]:
    return [f"{tag} prompt {n}: a lighthouse in a storm" for n in range(count)]


def drop(daemon: DaemonProcess, name: str, lines: list[str]) -> float:
    """Write an input aside in the inbox, then rename it; the time of the rename, by the
    stand-in's clock (``time.monotonic()``)."""
    inbox = daemon.home / "inbox"
    temporary = inbox / f".{name}.tmp"
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    published = time.monotonic()
    temporary.rename(inbox / name)
    return published


def wait_processed(daemon: DaemonProcess, names: set[str], timeout: float, what: str) -> None:
    """Wait for ``names`` in processed/ (or failed/: then say why)."""
    wait_until(all_finished(daemon.home, names), timeout=timeout, what=what, interval=0.02)
    check_no_failures(daemon.home)
    if not daemon.alive():
        raise BenchError(daemon.failure("the daemon ended"))


def of_tag(calls: list[Call], tag: str) -> list[Call]:
    return [c for c in calls if c.prompt is not None and c.prompt.startswith(tag + " ")]


@dataclass(frozen=True)
class Published:
    """One call and its image: from the answer to the PNG's link and to its sidecar."""

    prompt: str
    to_png: float
    to_sidecar: float
    arrived: float  # the sidecar, time.monotonic()


def published(home: Path, arrivals: FileEvents, calls: list[Call]) -> list[Published]:
    """Each call matched to its image by request id (the sidecar's ``request_id``)."""
    seen = arrivals.times()
    by_request: dict[str, tuple[str, str]] = {}
    for name in seen:
        if name.endswith(".json"):
            data = json.loads((home / "images" / name).read_text(encoding="utf-8"))
            if "request_id" in data:
                by_request[data["request_id"]] = (name, data["prompt"])
    found = []
    for call in calls:
        if call.status != 200 or call.ended is None:
            raise BenchError(f"call {call.request_id} answered {call.status}: {call.fault}")
        if call.request_id not in by_request:
            raise BenchError(f"no sidecar in images/ holds request id {call.request_id}")
        name, prompt = by_request[call.request_id]
        if prompt != call.prompt:
            raise BenchError(f"{name}: prompt {prompt!r}, but its call's is {call.prompt!r}")
        png = seen.get(name.removesuffix(".json") + ".png", seen[name])
        found.append(Published(prompt, png - call.ended, seen[name] - call.ended, seen[name]))
    return found


# -- 1. throughput ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    wall: float  # drop to the input in processed/
    to_last_image: float  # drop to the last sidecar
    first_call: float  # drop to the first call at the stand-in
    answered: float  # drop to the last answer
    peak_in_flight: int
    published: list[Published]


def throughput_run(
    daemon: DaemonProcess,
    standin: ImagesStandIn,
    images: FileEvents,
    processed: FileEvents,
    tag: str,
    count: int,
) -> Run:
    standin.reset_calls()
    images_before = images.count(".json")
    name = f"{tag}.txt"
    dropped = drop(daemon, name, prompts(tag, count))
    timeout = count * (standin.latency + 30) + 60
    wait_processed(daemon, {name}, timeout, f"{name} in processed/")
    wait_until(lambda: name in processed.times(), 10, f"the event of {name} in processed/")
    wait_until(lambda: arrivals_done(images, images_before + count), 10, f"{tag}'s sidecars")
    calls = of_tag(standin.calls, tag)
    if len(calls) != count:
        raise BenchError(f"{tag}: {len(calls)} calls at the stand-in, {count} expected")
    found = published(daemon.home, images, calls)
    last_image = max(p.arrived for p in found)
    return Run(
        wall=processed.times()[name] - dropped,
        to_last_image=last_image - dropped,
        first_call=min(c.started for c in calls) - dropped,
        answered=max(c.ended or 0.0 for c in calls) - dropped,
        peak_in_flight=standin.peak_in_flight,
        published=found,
    )


def measure_throughput(
    standin: ImagesStandIn, concurrency: int, count: int, runs: int, log: Log
) -> list[Run]:
    with (
        home_folder(f"{NAME}-throughput", None) as home,
        arrivals_in(home / "images") as images,
        arrivals_in(home / "processed") as processed,
    ):
        env = openai_env(home, standin, concurrency)
        with DaemonProcess(home, env, "run") as daemon:
            daemon.ready(timeout=60)
            # The client's connections are opened, and its code paths run, once before timing.
            throughput_run(daemon, standin, images, processed, "warmup", concurrency)
            results = []
            limit = concurrency / standin.latency
            for number in range(runs):
                tag = f"c{concurrency}-run{number}"
                run = throughput_run(daemon, standin, images, processed, tag, count)
                results.append(run)
                rate = count / run.wall
                log(
                    f"{NAME}: throughput run {number + 1}/{runs}: {run.wall:.3f} s, "
                    f"{rate:.3f} images/s ({rate / limit:.1%} of the limit)"
                )
    return results


# -- 2. answer to image, one call at a time -------------------------------------------------------


def measure_single_calls(
    standin: ImagesStandIn, count: int, log: Log
) -> tuple[list[Published], list[Published]]:
    """At concurrency 1: ``count`` one-line inputs dropped one at a time, each once the
    previous one is in processed/ (nothing else going on), then one input of ``count``
    lines (the next prompt goes out before the image of the previous one is written)."""
    with home_folder(f"{NAME}-single", None) as home, arrivals_in(home / "images") as seen:
        env = openai_env(home, standin, 1)
        with DaemonProcess(home, env, "run") as daemon:
            daemon.ready(timeout=60)
            timeout = standin.latency + 60
            drop(daemon, "warmup.txt", prompts("warmup", 1))
            wait_processed(daemon, {"warmup.txt"}, timeout, "warmup.txt in processed/")
            standin.reset_calls()
            for number in range(count):
                name = f"single-{number:03d}.txt"
                drop(daemon, name, prompts(f"single-{number:03d}", 1))
                wait_processed(daemon, {name}, timeout, f"{name} in processed/")
            wait_until(lambda: arrivals_done(seen, count + 1), 10, "the single calls' sidecars")
            alone = published(home, seen, of_tag_prefix(standin.calls, "single-"))
            log(f"{NAME}: single calls, one at a time: p50 {ms(median(to(alone)))}")
            standin.reset_calls()
            drop(daemon, "lines.txt", prompts("lines", count))
            wait_processed(daemon, {"lines.txt"}, count * timeout, "lines.txt in processed/")
            wait_until(lambda: arrivals_done(seen, 2 * count + 1), 10, "lines.txt's sidecars")
            batched = published(home, seen, of_tag(standin.calls, "lines"))
            log(f"{NAME}: single calls, one input of {count} lines: p50 {ms(median(to(batched)))}")
    return alone, batched


def arrivals_done(arrivals: FileEvents, count: int) -> bool:
    return arrivals.count(".json") >= count


def of_tag_prefix(calls: list[Call], prefix: str) -> list[Call]:
    return [c for c in calls if c.prompt is not None and c.prompt.startswith(prefix)]


def to(images: list[Published]) -> list[float]:
    return [p.to_sidecar for p in images]


# -- 3. memory over many images -----------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    seconds: float
    images: int
    rss_kib: int


class Sampler:
    """The daemon's VmRSS and the images published so far, every ``interval`` seconds."""

    def __init__(self, pid: int, arrivals: FileEvents, before: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.arrivals = arrivals
        self.before = before  # images published before the soak (the warm-up's)
        self.samples: list[Sample] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self.take()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def take(self) -> Sample | None:
        rss = rss_kib(self.pid)
        if rss is None:
            return None
        images = self.arrivals.count(".json") - self.before
        sample = Sample(time.monotonic() - self.started, images, rss)
        self.samples.append(sample)
        return sample

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self.take() is None:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.take()


@dataclass(frozen=True)
class Memory:
    ready_kib: int
    warm_kib: int
    end_kib: int
    peak_kib: int  # VmHWM at the end, or the highest sample
    first_fifth_kib: float
    last_fifth_kib: float
    elapsed: float
    samples: list[Sample]

    @property
    def change(self) -> float:
        return (self.last_fifth_kib - self.first_fifth_kib) / self.first_fifth_kib


def fifths(samples: list[Sample], total: int) -> tuple[float, float]:
    """Median RSS over the first fifth of the images against the last fifth."""
    early: list[float] = [s.rss_kib for s in samples if 0 <= s.images <= WINDOW * total]
    late: list[float] = [s.rss_kib for s in samples if s.images >= (1 - WINDOW) * total]
    return median(early or [samples[0].rss_kib]), median(late or [samples[-1].rss_kib])


def measure_memory(standin: ImagesStandIn, total: int, per_input: int, warmup: int) -> Memory:
    with (
        home_folder(f"{NAME}-memory", None) as home,
        arrivals_in(home / "images") as seen,
        DaemonProcess(home, openai_env(home, standin, 8), "run") as daemon,
    ):
        daemon.ready(timeout=60)
        ready = rss_kib(daemon.pid) or 0
        drop(daemon, "warmup.txt", prompts("warmup", warmup))
        wait_processed(daemon, {"warmup.txt"}, 120, "warmup.txt in processed/")
        wait_until(lambda: arrivals_done(seen, warmup), 10, "the warm-up's sidecars")
        sampler = Sampler(daemon.pid, seen, seen.count(".json"))
        try:
            warm = sampler.samples[0].rss_kib
            started = time.monotonic()
            names = set()
            for start in range(0, total, per_input):
                name = f"memory-{start // per_input:03d}.txt"
                lines = prompts(f"memory-{start:04d}", min(per_input, total - start))
                drop(daemon, name, lines)
                names.add(name)
            wait_processed(daemon, names, total + 120, f"{len(names)} inputs in processed/")
            wait_until(lambda: arrivals_done(seen, warmup + total), 10, "every sidecar")
            elapsed = time.monotonic() - started
        finally:
            sampler.stop()
        # VmHWM, or a sample above it: the kernel's counters are per CPU, read approximately.
        peak = max([hwm_kib(daemon.pid) or 0] + [s.rss_kib for s in sampler.samples])
        end = sampler.samples[-1].rss_kib
    first, last = fifths(sampler.samples, total)
    return Memory(ready, warm, end, peak, first, last, elapsed, sampler.samples)


# -- 4. start-up ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartUp:
    """Seconds from the process start: an empty inbox, then one input waiting."""

    watching: float
    ready: float
    waiting_ready: float  # READY=1 with the input waiting
    first_call: float  # its call at the stand-in
    first_image: float  # its sidecar in images/


def waiting_input(home: Path, name: str, lines: list[str]) -> None:
    """An input that has waited in the inbox a while (as one does when a daemon restarts): its
    mtime a minute old, so that the daemon's start-up scan takes it without settling."""
    path = home / "inbox" / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    past = time.time() - 60
    os.utime(path, (past, past))


def measure_start_ups(standin: ImagesStandIn, starts: int, log: Log) -> list[StartUp]:
    """``starts`` pairs of starts, each a new daemon in the same home: one with an empty inbox
    (to ``watching`` and to ``READY=1``), then one with a one-line input waiting (to READY=1,
    to its call and to its image; the stand-in answers at once, whatever its latency was)."""
    latency, standin.latency = standin.latency, 0.0
    times: list[StartUp] = []
    readies = 0
    with (
        home_folder(f"{NAME}-start", None) as home,
        arrivals_in(home / "images") as images,
    ):
        listener = NotifyListener(home / "notify.sock")
        try:
            env = openai_env(home, standin, 4, NOTIFY_SOCKET=str(listener.path))
            for number in range(starts):
                with DaemonProcess(home, env, "run") as daemon:
                    watching = daemon.ready(timeout=60)
                    ready = listener.wait_ready(readies, 30) - daemon.started
                readies += 1
                tag = f"first-{number}"
                waiting_input(home, f"{tag}.txt", prompts(tag, 1))
                standin.reset_calls()
                before = images.count(".json")
                # The stand-in's and the reader's clock, read just before DaemonProcess reads
                # its own (perf_counter) and starts the process: microseconds apart.
                started = time.monotonic()
                with DaemonProcess(home, env, "run") as daemon:
                    waiting_ready = listener.wait_ready(readies, 30) - daemon.started
                    wait_processed(daemon, {f"{tag}.txt"}, 60, f"{tag}.txt in processed/")
                    done = partial(arrivals_done, images, before + 1)
                    wait_until(done, 10, f"{tag}'s sidecar")
                readies += 1
                calls = of_tag(standin.calls, tag)
                [image] = published(home, images, calls)
                start = StartUp(
                    watching,
                    ready,
                    waiting_ready,
                    calls[0].started - started,
                    image.arrived - started,
                )
                times.append(start)
                log(
                    f"{NAME}: start {number + 1}/{starts}: {watching:.3f} s, READY "
                    f"{ready:.3f} s; one input waiting: first image {start.first_image:.3f} s"
                )
        finally:
            listener.close()
            standin.latency = latency
    return times


# -- all four --------------------------------------------------------------------------------------


def run(quick: bool, log: Log) -> Result:
    latency = 0.5 if quick else 2.0
    concurrency = 4 if quick else 8
    count = 8 if quick else 24
    runs = 1 if quick else 3
    singles = 4 if quick else 50
    total, per_input, warmup = (50, 10, 10) if quick else (1000, 10, 20)
    starts = 2 if quick else 5
    load_before = os.getloadavg()[0]
    with ImagesStandIn(latency=latency, api_key=None) as standin:
        standin.latency = latency
        runs_done = measure_throughput(standin, concurrency, count, runs, log)
        alone, batched = measure_single_calls(standin, singles, log)
        standin.latency = 0.05
        memory = measure_memory(standin, total, per_input, warmup)
        log(
            f"{NAME}: memory over {total} images: {mb(memory.first_fifth_kib)} -> "
            f"{mb(memory.last_fifth_kib)}, peak {mb(memory.peak_kib)}"
        )
        start_ups = measure_start_ups(standin, starts, log)
    load = (load_before, os.getloadavg()[0])
    return report(
        quick,
        latency,
        concurrency,
        count,
        runs_done,
        alone,
        batched,
        memory,
        total,
        per_input,
        warmup,
        start_ups,
        load,
    )


def spread(values: list[float], show: str = "ms") -> list[str]:
    cells = [median(values), percentile(values, 90), percentile(values, 99), max(values)]
    return [ms(v) for v in cells] if show == "ms" else [f"{v:.3f} s" for v in cells]


def report(
    quick: bool,
    latency: float,
    concurrency: int,
    count: int,
    runs: list[Run],
    alone: list[Published],
    batched: list[Published],
    memory: Memory,
    total: int,
    per_input: int,
    warmup: int,
    start_ups: list[StartUp],
    load: tuple[float, float],
) -> Result:
    limit = concurrency / latency
    best = count / limit
    wall = median([r.wall for r in runs])
    fraction = count / wall / limit
    throughput_ok = fraction >= GOAL_FRACTION
    at_c = [p for r in runs for p in r.published]
    alone_p50 = median(to(alone))
    publish_ok = alone_p50 < GOAL_PUBLISH_P50
    flat = memory.change <= FLAT_TOLERANCE
    memory_ok = memory.peak_kib < GOAL_RSS_KIB and flat
    ready = median([s.ready for s in start_ups])
    watching = median([s.watching for s in start_ups])
    first_image = median([s.first_image for s in start_ups])
    ready_ok = ready < GOAL_READY
    verdicts = [throughput_ok, publish_ok, memory_ok, ready_ok]
    summary = Table(
        ["measurement", "result", "goal", "met"],
        [
            [
                f"1. throughput, one input of {count} lines, `SORA_CONCURRENCY={concurrency}`, "
                f"latency {latency:g} s (median of {len(runs)} run{'s' * (len(runs) > 1)})",
                f"{wall:.2f} s ({best:g} s at best): {count / wall:.2f} images/s of "
                f"{limit:g}, **{fraction:.1%}** of the limit",
                f">= {GOAL_FRACTION:.0%} of the limit",
                yes_no(throughput_ok),
            ],
            [
                f"2. answer to image ({SIZE} PNG, text chunks and sidecar), single calls, "
                f"{len(alone)} images",
                f"p50 **{ms(alone_p50)}**, p99 {ms(percentile(to(alone), 99))}",
                f"p50 < {GOAL_PUBLISH_P50 * 1000:.0f} ms",
                yes_no(publish_ok),
            ],
            [
                f"3. daemon RSS over {total:,} images ({total // per_input} inputs of "
                f"{per_input} lines, concurrency 8, latency 0.05 s)",
                f"start {mb(memory.warm_kib)}, peak **{mb(memory.peak_kib)}**; first fifth "
                f"{mb(memory.first_fifth_kib)}, last fifth {mb(memory.last_fifth_kib)} "
                f"(**{memory.change:+.1%}**)",
                f"peak < {GOAL_RSS_KIB // 1024} MB, last fifth within +{FLAT_TOLERANCE:.0%}",
                yes_no(memory_ok),
            ],
            [
                f"4. start-up to READY=1 (median of {len(start_ups)} starts)",
                f"**{ready:.3f} s** (`watching` line {watching:.3f} s); first image of an "
                f"input waiting at the start, latency 0: {first_image:.3f} s (not judged)",
                f"< {GOAL_READY:g} s",
                yes_no(ready_ok),
            ],
        ],
    )
    throughput_table = Table(
        [
            "run",
            "drop to processed/",
            "drop to last image",
            "images/s",
            "fraction of limit",
            "drop to first call",
            "last answer to processed/",
            "peak in flight",
        ],
        [
            [
                str(number + 1),
                f"{r.wall:.3f} s",
                f"{r.to_last_image:.3f} s",
                f"{count / r.wall:.3f}",
                f"{count / r.wall / limit:.1%}",
                ms(r.first_call),
                ms(r.wall - r.answered),
                str(r.peak_in_flight),
            ]
            for number, r in enumerate(runs)
        ],
        title=f"1. Throughput: {count} prompts in one input, concurrency {concurrency}, "
        f"latency {latency:g} s (limit {limit:g} images/s, {best:g} s)",
    )
    cases = [
        (f"concurrency 1: {len(alone)} one-line inputs, one at a time", alone),
        (f"concurrency 1: one input of {len(batched)} lines", batched),
        (f"concurrency {concurrency}: the throughput runs' images", at_c),
    ]
    publish_table = Table(
        ["calls", "images", "p50", "p90", "p99", "max", "p50, answer to PNG linked", "judged"],
        [
            [
                label,
                str(len(images)),
                *spread(to(images)),
                ms(median([p.to_png for p in images])),
                "yes" if images is alone else "(shown)",
            ]
            for label, images in cases
        ],
        title="2. From the stand-in's answer (`ended`) to the sidecar in images/",
    )
    quarters = [memory.samples[0]]
    for quarter in (0.25, 0.5, 0.75):
        at = next((s for s in memory.samples if s.images >= quarter * total), None)
        if at is not None and at not in quarters:
            quarters.append(at)
    memory_rows = [["ready (no job yet)", "-", mb(memory.ready_kib)]]
    memory_rows += [
        [
            f"start (after a warm-up of {warmup})"
            if s is memory.samples[0]
            else f"{s.seconds:.1f} s",
            str(s.images),
            mb(s.rss_kib),
        ]
        for s in quarters
    ]
    memory_rows += [
        ["end", str(total), mb(memory.end_kib)],
        ["peak (VmHWM, or the highest sample)", "", mb(memory.peak_kib)],
        ["median, first fifth", f"0-{int(WINDOW * total)}", mb(memory.first_fifth_kib)],
        ["median, last fifth", f"{int((1 - WINDOW) * total)}-{total}", mb(memory.last_fifth_kib)],
        ["change", "", f"{memory.change:+.1%} ({'flat' if flat else 'not flat'})"],
    ]
    memory_table = Table(
        ["when", "images", "daemon RSS"],
        memory_rows,
        title=f"3. Daemon RSS, {total:,} images in {memory.elapsed:.1f} s "
        f"({len(memory.samples)} samples)",
    )
    start_table = Table(
        [
            "start",
            "to `watching`",
            "to READY=1",
            "input waiting: to READY=1",
            "to its call",
            "to its image (latency 0)",
        ],
        [
            [
                str(n + 1),
                f"{s.watching:.3f} s",
                f"{s.ready:.3f} s",
                f"{s.waiting_ready:.3f} s",
                f"{s.first_call:.3f} s",
                f"{s.first_image:.3f} s",
            ]
            for n, s in enumerate(start_ups)
        ]
        + [
            [
                "median",
                f"{watching:.3f} s",
                f"{ready:.3f} s",
                f"{median([s.waiting_ready for s in start_ups]):.3f} s",
                f"{median([s.first_call for s in start_ups]):.3f} s",
                f"{first_image:.3f} s",
            ]
        ],
        title="4. Start-up, from the process start (`python watcher.py run`)",
    )
    met = "yes" if all(verdicts) else ("no" if not any(verdicts) else "partly")
    notes = [
        "The stand-in runs in the benchmark's process (`ImagesStandIn`), so that its call times "
        "(`time.monotonic()`) and those of the benchmark's inotify reader share one clock. Its "
        "`ended` is taken just before the answer's headers and body are written: an answer to "
        "image time includes the answer's transfer, the `openai` package's parsing, the "
        "base64 decoding, the PNG's check, its text chunks, the staged write, the journal, the "
        "link into images/ and the sidecar, each with its fsync. Calls and images are matched "
        "by request id (the stand-in's `x-request-id`, kept in the sidecar).",
        "Throughput: a warm daemon (a warm-up input of `c` prompts first), time from the "
        "input's rename into inbox/ to its arrival in processed/ (the inotify event). *Drop to "
        "first call*: detection, claim and send; *last answer to processed/*: the last "
        "images written, the input moved.",
        "Answer to image, judged on one call at a time (one-line inputs, each dropped when the "
        "previous is in processed/). In one input of many lines, the next prompt is sent "
        "before the image of the one that ended is written; at concurrency "
        f"{concurrency}, up to {concurrency} answers arrive together and are written one "
        "after the other, in input order.",
        f"Memory: sampled every 0.2 s from /proc after a warm-up of {warmup} images; flat = "
        f"the median of the last fifth of the images within +{FLAT_TOLERANCE:.0%} of the "
        "first fifth's.",
        "Start-up: a new daemon each time, in the same home, `NOTIFY_SOCKET` pointing to the "
        "benchmark's own datagram socket (as systemd would); the judged time is READY=1 with "
        "an empty inbox, sent just after the `watching` line. The backend opens no connection "
        "at start-up, and imports the `openai` package on a thread of its own: the first call "
        "waits for that import if it is not done. So each start is followed by another with "
        "a one-line input waiting in inbox/ (written before the start, a minute old: no "
        "settling) and the stand-in answering at once (latency 0): *to its call* is its "
        "arrival at the stand-in, *to its image* its sidecar in images/, that wait included. "
        "Shown, not judged.",
        f"Load average (1 min) {load[0]:.2f} at the start of the benchmark, {load[1]:.2f} at "
        f"its end, on {os.cpu_count()} cores: the daemon, the benchmark and the stand-in share "
        "them with whatever else runs on the machine.",
    ]
    headline = (
        f"c={concurrency}: {fraction:.0%} of the limit; answer to image p50 {ms(alone_p50)}; "
        f"RSS peak {mb(memory.peak_kib)}, {memory.change:+.0%}; READY in {ready:.2f} s, "
        f"first image in {first_image:.2f} s"
    )
    return Result(
        name=NAME,
        title=TITLE,
        goal=f"throughput >= {GOAL_FRACTION:.0%} of the limit; answer to image p50 < "
        f"{GOAL_PUBLISH_P50 * 1000:.0f} ms; daemon RSS < {GOAL_RSS_KIB // 1024} MB and flat "
        f"over {total:,} images; READY=1 in < {GOAL_READY:g} s",
        met=met,
        tables=[summary, throughput_table, publish_table, memory_table, start_table],
        notes=notes,
        headline=headline,
        raw={
            "latency_s": latency,
            "concurrency": concurrency,
            "prompts": count,
            "throughput_runs": [
                {
                    "wall_s": r.wall,
                    "to_last_image_s": r.to_last_image,
                    "first_call_s": r.first_call,
                    "answered_s": r.answered,
                    "peak_in_flight": r.peak_in_flight,
                }
                for r in runs
            ],
            "singles": len(alone),
            "answer_to_image_s": {
                "alone": to(alone),
                "one_input": to(batched),
                f"c{concurrency}": to(at_c),
            },
            "answer_to_png_s": {"alone": [p.to_png for p in alone]},
            "memory": {
                "images": total,
                "ready_kib": memory.ready_kib,
                "peak_kib": memory.peak_kib,
                "first_fifth_kib": memory.first_fifth_kib,
                "last_fifth_kib": memory.last_fifth_kib,
                "elapsed_s": memory.elapsed,
                "samples": [[s.seconds, s.images, s.rss_kib] for s in memory.samples],
            },
            "start_up_s": [
                {
                    "watching": s.watching,
                    "ready": s.ready,
                    "waiting_ready": s.waiting_ready,
                    "first_call": s.first_call,
                    "first_image": s.first_image,
                }
                for s in start_ups
            ],
            "load_average": list(load),
        },
        quick=quick,
    )

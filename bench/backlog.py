"""4. Backlog: many small inputs already in ``inbox/`` at start-up, drained by ``once``.

``SORA_BACKEND=instant`` (a 64x64 PNG at once, no browser), so this is the daemon's own cost
per input: claim, journal, image, sidecar, moves, logs. The inputs are written before the
daemon starts, with an mtime a minute old (they have been there a while: no settle wait).
Time: from the process start to its exit; drain = from its ``watching`` line to its exit.
Peak RSS: ``ru_maxrss`` of the daemon (``wait4``), which is its VmHWM at the end.
"""

from __future__ import annotations

import os
import threading
import time

from bench.harness import (
    BenchError,
    DaemonProcess,
    Log,
    Result,
    Table,
    daemon_env,
    home_folder,
    input_files,
    mb,
    names_in,
    rss_kib,
    yes_no,
)

NAME = "backlog"
GOAL_RSS_KIB = 200 * 1024
LINEAR_TOLERANCE = 1.25  # per-input time at the largest size within 25 % of the smallest's
TIME_CAP_SECONDS = 900.0  # beyond that, stop and report the rate so far


def fill_inbox(inbox: os.PathLike[str], count: int) -> None:
    old = time.time() - 60
    for number in range(count):
        path = os.path.join(inbox, f"input-{number:05d}.txt")
        with open(path, "w", encoding="utf-8") as out:
            out.write(f"backlog benchmark prompt number {number}: a quiet street\n")
        os.utime(path, (old, old))


class Sampler:
    """VmRSS of one process every ``interval`` seconds, on a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        started = time.perf_counter()
        while not self._stop.wait(interval):
            rss = rss_kib(self.pid)
            if rss is None:
                return
            self.samples.append((time.perf_counter() - started, rss))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def drain(count: int, log: Log) -> dict[str, float | int | bool]:
    with home_folder(f"{NAME}-{count}", None) as home:
        fill_inbox(home / "inbox", count)
        env = daemon_env(home, None, SORA_BACKEND="instant")
        daemon = DaemonProcess(home, env, "once")
        sampler = Sampler(daemon.pid)
        complete = True
        try:
            startup = daemon.ready(timeout=120)
            try:
                code = daemon.wait(TIME_CAP_SECONDS)
            except BenchError:
                complete = False
                log(f"{NAME}: {count} inputs: over {TIME_CAP_SECONDS:g}s, stopping")
                code = daemon.stop() or 0
            total = time.perf_counter() - daemon.started
        finally:
            sampler.stop()
            daemon.stop()
        done = len(input_files(home / "processed"))
        failed = len(input_files(home / "failed"))
        left = len(names_in(home / "inbox"))
        if complete and (code != 0 or done != count):
            raise BenchError(
                daemon.output.failure(
                    f"once exited {code} with {done}/{count} processed, {failed} failed, "
                    f"{left} left in inbox/"
                )
            )
        sampled_peak = max((rss for _, rss in sampler.samples), default=0)
        drain_s = total - startup
        result: dict[str, float | int | bool] = {
            "inputs": count,
            "complete": complete,
            "processed": done,
            "total_s": total,
            "startup_s": startup,
            "drain_s": drain_s,
            "per_input_ms": drain_s / max(done, 1) * 1000,
            "peak_rss_kib": max(daemon.max_rss_kib, sampled_peak),
            "sampled_peak_kib": sampled_peak,
        }
        log(
            f"{NAME}: {count} inputs: {drain_s:.1f}s drain, "
            f"{result['per_input_ms']:.2f} ms/input, peak RSS {mb(result['peak_rss_kib'])}"
        )
        return result


def run(quick: bool, log: Log) -> Result:
    sizes = (100,) if quick else (1000, 3000, 10000)
    results = [drain(count, log) for count in sizes]
    rows = []
    for r in results:
        rows.append(
            [
                f"{r['inputs']:,}" + ("" if r["complete"] else f" (stopped at {r['processed']:,})"),
                f"{r['total_s']:.1f} s",
                f"{r['startup_s']:.2f} s",
                f"{r['drain_s']:.1f} s",
                f"{r['per_input_ms']:.2f} ms",
                f"{1000 / float(r['per_input_ms']):.0f}",
                mb(r["peak_rss_kib"]),
            ]
        )
    per_input = [float(r["per_input_ms"]) for r in results]
    growth = per_input[-1] / per_input[0]
    peak = max(int(r["peak_rss_kib"]) for r in results)
    linear = growth <= LINEAR_TOLERANCE
    rss_ok = peak < GOAL_RSS_KIB
    complete = all(r["complete"] for r in results)
    table = Table(
        [
            "inputs in inbox/",
            "total (start to exit)",
            "start-up",
            "drain",
            "per input",
            "inputs/s",
            "peak RSS",
        ],
        rows,
    )
    verdict = Table(
        ["criterion", "measured", "met"],
        [
            [
                "time grows linearly (per input at the largest size within 25 % of the smallest)",
                f"{growth:.2f}x",
                yes_no(linear) if len(results) > 1 else "n/a (one size)",
            ],
            ["peak RSS under 200 MB", mb(peak), yes_no(rss_ok)],
            ["every size drained in under 15 min", yes_no(complete), yes_no(complete)],
        ],
    )
    met = yes_no(linear and rss_ok and complete) if len(results) > 1 else yes_no(rss_ok)
    return Result(
        name=NAME,
        title="Backlog",
        goal="drain time linear in the number of inputs; RSS under 200 MB",
        met=met,
        tables=[table, verdict],
        headline=f"{results[-1]['inputs']:,} inputs in {results[-1]['drain_s']:.0f} s "
        f"({per_input[-1]:.1f} ms each, {growth:.2f}x the smallest size's), "
        f"peak RSS {mb(peak)}",
        notes=[
            "`sora-watcher once`, `SORA_BACKEND=instant`, one single-line `.txt` input per "
            "file, each prompt different. One run per size.",
        ],
        raw={"results": results},
        quick=quick,
    )

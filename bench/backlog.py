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
from typing import Any

from bench.harness import (
    BenchError,
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
from standin_kit.process import DaemonProcess, StillRunning

NAME = "backlog"
GOAL_RSS_KIB = 200 * 1024
LINEAR_TOLERANCE = 1.25  # per-input time at the largest size within 25 % of the smallest's
RUNS = 3  # per size; the median run is reported
TIME_CAP_SECONDS = 900.0  # beyond that, stop and report the rate so far


def fill_inbox(inbox: os.PathLike[str], count: int, lines: int = 1) -> None:
    old = time.time() - 60
    for number in range(count):
        path = os.path.join(inbox, f"input-{number:05d}.txt")
        with open(path, "w", encoding="utf-8") as out:
            for line in range(lines):
                out.write(f"backlog benchmark prompt {number}.{line}: a quiet street\n")
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


def drain(count: int, log: Log, lines: int = 1) -> dict[str, float | int | bool]:
    """``count`` inputs of ``lines`` prompts each, drained by ``once``."""
    what = f"{count} inputs" if lines == 1 else f"{count} input(s) of {lines} lines"
    with home_folder(f"{NAME}-{count}x{lines}", None) as home:
        fill_inbox(home / "inbox", count, lines)
        env = daemon_env(home, None, SORA_BACKEND="instant")
        daemon = DaemonProcess(home, env, "once")
        sampler = Sampler(daemon.pid)
        complete = True
        try:
            startup = daemon.ready(timeout=120)
            try:
                code = daemon.wait(TIME_CAP_SECONDS)
            except StillRunning:
                complete = False
                log(f"{NAME}: {what}: over {TIME_CAP_SECONDS:g}s, stopping")
                code = daemon.stop()
            total = time.perf_counter() - daemon.started
        finally:
            sampler.stop()
            daemon.stop()
        done = len(input_files(home / "processed"))
        prompts = len(list((home / "images").glob("*.png")))
        failed = len(input_files(home / "failed"))
        left = len(names_in(home / "inbox"))
        if complete and (code != 0 or done != count):
            raise BenchError(
                daemon.failure(
                    f"once exited {code} with {done}/{count} processed, {failed} failed, "
                    f"{left} left in inbox/"
                )
            )
        sampled_peak = max((rss for _, rss in sampler.samples), default=0)
        drain_s = total - startup
        result: dict[str, float | int | bool] = {
            "inputs": count,
            "lines": lines,
            "complete": complete,
            "processed": done,
            "prompts_done": prompts,
            "total_s": total,
            "startup_s": startup,
            "drain_s": drain_s,
            "per_input_ms": drain_s / max(done, 1) * 1000,
            "per_prompt_ms": drain_s / max(prompts, 1) * 1000,
            "peak_rss_kib": max(daemon.max_rss_kib, sampled_peak),
            "sampled_peak_kib": sampled_peak,
        }
        log(
            f"{NAME}: {what}: {drain_s:.1f}s drain, {result['per_prompt_ms']:.2f} ms/prompt, "
            f"peak RSS {mb(result['peak_rss_kib'])}"
        )
        return result


def median_run(runs: int, count: int, log: Log, lines: int = 1) -> dict[str, Any]:
    """The run with the median drain time, with every run's drain time and the highest peak."""
    results = sorted((drain(count, log, lines) for _ in range(runs)), key=lambda r: r["drain_s"])
    chosen: dict[str, Any] = dict(results[len(results) // 2])
    chosen["runs"] = runs
    chosen["drain_runs_s"] = [r["drain_s"] for r in results]
    chosen["peak_rss_kib"] = max(int(r["peak_rss_kib"]) for r in results)
    chosen["complete"] = all(r["complete"] for r in results)
    return chosen


def run(quick: bool, log: Log) -> Result:
    sizes = (100,) if quick else (1000, 3000, 10000)
    line_sizes = (20,) if quick else (100, 1000)
    runs = 1 if quick else RUNS
    results = [median_run(runs, count, log) for count in sizes]
    long_inputs = [median_run(runs, 1, log, lines) for lines in line_sizes]
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
            "drain (median run)",
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
    long_rows = [
        [
            f"{r['lines']:,}" + ("" if r["complete"] else f" (stopped at {r['prompts_done']:,})"),
            f"{r['drain_s']:.1f} s",
            f"{r['per_prompt_ms']:.1f} ms",
            mb(r["peak_rss_kib"]),
        ]
        for r in long_inputs
    ]
    per_prompt = [float(r["per_prompt_ms"]) for r in long_inputs]
    long_growth = per_prompt[-1] / per_prompt[0]
    long_table = Table(
        ["lines in the one input", "drain (median run)", "per prompt", "peak RSS"],
        long_rows,
        title="Extra, not in the goal: one input of many lines (a long prompt file, a big "
        f"CSV); per prompt at the largest size {long_growth:.1f}x the smallest size's",
    )
    return Result(
        name=NAME,
        title="Backlog",
        goal="drain time linear in the number of inputs; RSS under 200 MB",
        met=met,
        tables=[table, verdict, long_table],
        headline=f"{results[-1]['inputs']:,} inputs in {results[-1]['drain_s']:.0f} s "
        f"({per_input[-1]:.1f} ms each, {growth:.2f}x the smallest size's), "
        f"peak RSS {mb(peak)}; one input of {line_sizes[-1]:,} lines: "
        f"{per_prompt[-1]:.0f} ms per prompt",
        notes=[
            "`sora-watcher once`, `SORA_BACKEND=instant`, one single-line `.txt` input per "
            f"file, each prompt different. Each size is drained {runs} time(s), a fresh folder "
            "each time; the run with the median drain time is shown, with the highest peak "
            "RSS of all runs.",
            "One input of many lines: the same, with all the prompts in one `.txt` file; "
            "the time per prompt should not depend on the number of lines.",
        ],
        raw={"results": results, "long_inputs": long_inputs},
        quick=quick,
    )

"""2. Per-job overhead: the time an image costs beyond the site's own generation time.

*Warm*: one daemon (``run``, web backend, one browser for its whole life) gets N single-prompt
inputs at once, after a warm-up input that loads the page; per image = wall time from the
drops to the last input in ``processed/``, divided by N. *A browser per job* (the naive
design): ``python watcher.py generate --prompt-file X`` once per job, one after another; per
image = the command's wall time (Python start-up, browser launch, session check, page load,
generation, browser close). Overhead = per image minus the stand-in's generation delay.
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import (
    BenchError,
    Log,
    Result,
    StandInProcess,
    Table,
    all_finished,
    check_no_failures,
    daemon_env,
    home_folder,
    input_files,
    median,
    ms,
    publish_by_rename,
    sidecars,
    wait_until,
)
from standin_kit.process import DaemonProcess, run_watcher

NAME = "overhead"


def prompt(kind: str, run: int, job: int) -> str:
    return f"overhead benchmark {kind} run {run} job {job}: a lighthouse at dawn\n"


def warm_runs(
    standin: StandInProcess, jobs: int, runs: int, log: Log
) -> tuple[list[float], list[dict[str, Any]]]:
    """Per-image wall times (one per run) and the sidecars of the measured images."""
    per_image: list[float] = []
    with home_folder(f"{NAME}-warm", standin.base_url) as home:
        inbox, processed = home / "inbox", home / "processed"
        env = daemon_env(home, standin.base_url)
        with DaemonProcess(home, env, "run") as daemon:
            daemon.ready()
            publish_by_rename(inbox, "warmup.txt", prompt("warm-up", 0, 0))
            wait_until(lambda: "warmup.txt" in input_files(processed), 120, "the warm-up input")
            for run in range(runs):
                time.sleep(0.6)  # out of watchdog's 0.5 s hold after the last claim
                names = [f"run{run}-job{job:02d}.txt" for job in range(jobs)]
                started = time.perf_counter()
                for job, name in enumerate(names):
                    publish_by_rename(inbox, name, prompt("warm", run, job))
                finished = wait_until(
                    all_finished(home, set(names)),
                    timeout=jobs * (standin.delay + 30) + 60,
                    what=f"run {run}'s {jobs} inputs in processed/",
                )
                check_no_failures(home)
                per_image.append((finished - started) / jobs)
                log(f"{NAME}: warm run {run + 1}/{runs}: {per_image[-1]:.3f}s per image")
        measured = [s for s in sidecars(home) if s["source"].startswith("run")]
    return per_image, measured


def naive_runs(standin: StandInProcess, jobs: int, runs: int, log: Log) -> list[list[float]]:
    """Per run, the wall time of each ``generate`` command."""
    walls: list[list[float]] = []
    with home_folder(f"{NAME}-naive", standin.base_url) as home:
        env = daemon_env(home, standin.base_url)
        for run in range(runs):
            times = []
            for job in range(jobs):
                prompt_file = home / f"naive-run{run}-job{job:02d}.txt"
                prompt_file.write_text(prompt("naive", run, job), encoding="utf-8")
                started = time.perf_counter()
                done = run_watcher(
                    home, env, "generate", "--prompt-file", str(prompt_file), timeout=180
                )
                times.append(time.perf_counter() - started)
                if done.returncode != 0:
                    output = (done.stdout + done.stderr)[-3000:]
                    raise BenchError(f"generate exited with {done.returncode}:\n{output}")
            walls.append(times)
            log(f"{NAME}: naive run {run + 1}/{runs}: {median(times):.3f}s per image")
    return walls


def run(quick: bool, log: Log) -> Result:
    delay = 0.3 if quick else 1.0
    jobs = 2 if quick else 10
    runs = 1 if quick else 3
    with StandInProcess(delay) as standin:
        warm, measured = warm_runs(standin, jobs, runs, log)
        naive = naive_runs(standin, jobs, runs, log)
    warm_image = median(warm)
    naive_image = median([median(times) for times in naive])
    warm_overhead, naive_overhead = warm_image - delay, naive_image - delay
    ratio = naive_overhead / warm_overhead if warm_overhead > 0 else float("inf")
    durations = [s["duration_s"] for s in measured]
    downloads = [s["timings_s"].get("download", 0.0) for s in measured]
    spread_warm = f"{min(warm):.3f}-{max(warm):.3f} s"
    naive_medians = [median(times) for times in naive]
    spread_naive = f"{min(naive_medians):.3f}-{max(naive_medians):.3f} s"
    table = Table(
        ["design", "runs x jobs", "per image", "runs' spread", "overhead per image"],
        [
            [
                "warm browser (daemon)",
                f"{runs} x {jobs}",
                f"{warm_image:.3f} s",
                spread_warm,
                f"**{warm_overhead:.3f} s**",
            ],
            [
                "a browser per job (`generate`)",
                f"{runs} x {jobs}",
                f"{naive_image:.3f} s",
                spread_naive,
                f"**{naive_overhead:.3f} s**",
            ],
            ["ratio (browser per job / warm)", "", "", "", f"**{ratio:.1f}x**"],
        ],
        title=f"Stand-in generation delay {delay:g} s; medians over runs",
    )
    breakdown = Table(
        ["warm daemon, from the images' sidecars", "median"],
        [
            ["`duration_s` (first step to image published)", f"{median(durations):.3f} s"],
            ["`duration_s` minus the delay", f"{median(durations) - delay:.3f} s"],
            ["of which download + PNG conversion (`timings_s.download`)", ms(median(downloads))],
        ],
        title=f"{len(measured)} images",
    )
    return Result(
        name=NAME,
        title="Per-job overhead",
        goal="none set: the warm daemon's overhead is compared with a browser per job",
        met="n/a",
        tables=[table, breakdown],
        headline=f"warm {warm_overhead:.2f} s vs a browser per job {naive_overhead:.2f} s "
        f"per image ({ratio:.1f}x)",
        notes=[
            "Warm: N inputs dropped at once into a running daemon after a warm-up input "
            "(the first job opens the page); per image = wall time from the first drop to the "
            "last input in processed/ / N.",
            "A browser per job: `python watcher.py generate --prompt-file X`, one process per "
            "job, timed from spawn to exit.",
            "The stand-in's page polls the task list every 700 ms, like the real site's page; "
            "the driver learns a task is done from that polling, so up to 0.7 s of each wait "
            "is the page's polling period, counted here as overhead.",
        ],
        raw={
            "delay_s": delay,
            "jobs": jobs,
            "warm_per_image_s": warm,
            "naive_per_job_s": naive,
            "sidecar_duration_s": durations,
        },
        quick=quick,
    )

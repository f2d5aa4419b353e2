"""3. Throughput: images per second against the limit ``concurrency / delay``.

A warm daemon (web backend) gets 30 prompts with a 2 s generation delay, at
``SORA_CONCURRENCY=1`` and ``3``, in two shapes: one input of 30 lines (median of several
runs), and 30 single-line inputs (one run). Time: from the drop to the last input in
``processed/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

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
    median,
    publish_by_rename,
    setting_exists,
    sidecars,
    wait_until,
    yes_no,
)
from standin_kit.process import DaemonProcess

NAME = "throughput"
GOAL_FRACTION = 0.90
CONCURRENCIES = (1, 3)


@dataclass(frozen=True)
class Shape:
    label: str
    inputs: int  # the prompts are spread evenly over this many inputs
    runs: int


def lines(prompts: int, tag: str) -> list[str]:
    return [f"throughput benchmark {tag} prompt {n}: a harbour at night" for n in range(prompts)]


def one_batch(daemon: DaemonProcess, prompts: int, inputs: int, tag: str, delay: float) -> float:
    """Seconds from the drop of ``prompts`` prompts in ``inputs`` inputs to the last one done."""
    home = daemon.home
    texts = lines(prompts, tag)
    per_input = prompts // inputs
    batch = [
        (f"{tag}-{n:02d}.txt", texts[n * per_input : (n + 1) * per_input]) for n in range(inputs)
    ]
    names = {name for name, _ in batch}
    time.sleep(0.6)  # out of watchdog's 0.5 s hold after the previous claim
    started = time.perf_counter()
    for name, chunk in batch:
        publish_by_rename(home / "inbox", name, "\n".join(chunk) + "\n")
    finished = wait_until(
        all_finished(home, names),
        timeout=prompts * (delay + 30) + 60,
        what=f"{tag}: {inputs} input(s) in processed/",
        interval=0.02,
    )
    check_no_failures(home)
    if not daemon.alive():
        raise BenchError(daemon.failure("the daemon ended"))
    return finished - started


def durations(home: Path, tag: str) -> list[float]:
    """``duration_s`` of the images of a batch: from a prompt's send to its image published."""
    return [s["duration_s"] for s in sidecars(home) if s["source"].startswith(tag + "-")]


def run(quick: bool, log: Log) -> Result:
    delay = 0.5 if quick else 2.0
    prompts = 4 if quick else 30
    concurrencies = CONCURRENCIES[:1] if quick else CONCURRENCIES
    shapes = [Shape(f"1 input of {prompts} lines", 1, 1 if quick else 3)]
    if not quick:
        shapes.append(Shape(f"{prompts} inputs of 1 line", prompts, 1))
    supported = setting_exists("SORA_CONCURRENCY")
    rows: list[list[str]] = []
    raw: dict[str, object] = {"delay_s": delay, "prompts": prompts, "supported": supported}
    verdicts: list[bool] = []
    pending = False
    with StandInProcess(delay) as standin:
        for concurrency in concurrencies:
            limit = concurrency / delay
            if concurrency > 1 and not supported:
                pending = True
                rows.append([str(concurrency), "-", "-", "-", "-", f"{limit:.2f}", "pending", "-"])
                log(f"{NAME}: SORA_CONCURRENCY unknown to this daemon: {concurrency} pending")
                continue
            with home_folder(f"{NAME}-c{concurrency}", standin.base_url) as home:
                env_vars = daemon_env(home, standin.base_url, SORA_CONCURRENCY=str(concurrency))
                with DaemonProcess(home, env_vars, "run") as daemon:
                    daemon.ready()
                    one_batch(daemon, concurrency, 1, f"c{concurrency}-warmup", delay)
                    for shape in shapes:
                        walls = []
                        each: list[float] = []
                        for number in range(shape.runs):
                            tag = f"c{concurrency}-{shape.inputs}in-run{number}"
                            walls.append(one_batch(daemon, prompts, shape.inputs, tag, delay))
                            each += durations(home, tag)
                            rate = prompts / walls[-1]
                            log(
                                f"{NAME}: concurrency {concurrency}, {shape.label}, run "
                                f"{number + 1}/{shape.runs}: {rate:.3f} images/s "
                                f"({rate / limit:.0%} of the limit)"
                            )
                        wall = median(walls)
                        rate = prompts / wall
                        fraction = rate / limit
                        if shape is shapes[0]:
                            verdicts.append(fraction >= GOAL_FRACTION)
                        raw[f"c{concurrency} {shape.label}"] = walls
                        raw[f"c{concurrency} {shape.label} duration_s"] = each
                        rows.append(
                            [
                                str(concurrency),
                                f"{shape.label} ({shape.runs} run{'s' * (shape.runs > 1)})",
                                f"{wall:.1f} s",
                                f"{rate:.3f}",
                                f"{median(each):.2f} s",
                                f"{limit:.2f}",
                                f"**{fraction:.0%}**",
                                yes_no(fraction >= GOAL_FRACTION),
                            ]
                        )
    if pending:
        met = "pending" if all(verdicts) else "no (concurrency 3 pending)"
    else:
        met = yes_no(all(verdicts))
    table = Table(
        [
            "`SORA_CONCURRENCY`",
            "prompts as",
            "wall time (median)",
            "images/s",
            "per image, send to publish",
            "limit (c / delay)",
            "fraction of limit",
            ">= 90 %",
        ],
        rows,
        title=f"{prompts} prompts, stand-in delay {delay:g} s",
    )
    notes = [
        "A warm daemon (web backend) per concurrency, after a warm-up input of `c` prompts; "
        "wall time from the drop to the last input in processed/. *Per image, send to "
        "publish*: the median `duration_s` of the images' sidecars, each prompt's own time "
        "from its send to its image published.",
        "The goal is judged on the first shape (one input of many lines).",
    ]
    if pending:
        notes.append(
            "`SORA_CONCURRENCY` is not a setting of this daemon yet (not in "
            "`sora_watcher/config.py`): the concurrency-3 row is pending. "
            "Run `python -m bench --only throughput` once it exists."
        )
    headline = ", ".join(
        f"c={r[0]}: {r[6].strip('*')}" for r in rows if r[1].startswith("1 input") or r[1] == "-"
    )
    return Result(
        name=NAME,
        title="Throughput",
        goal=f"at least {GOAL_FRACTION:.0%} of the limit (concurrency / delay)",
        met=met,
        tables=[table],
        headline=headline,
        notes=notes,
        raw=raw,
        quick=quick,
    )

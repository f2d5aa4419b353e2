"""7. HTTP API: ``POST /v1/jobs`` latency with 50 concurrent clients, and 1,000 jobs submitted
through the API, each processed exactly once.

A real daemon (``watcher.py run``, ``SORA_BACKEND=instant``, ``SORA_HTTP=127.0.0.1:0``, the port
read from its log) takes the jobs while they arrive: the API and the worker share its process,
as in production. 50 asyncio tasks share one ``httpx.AsyncClient`` (50 connections, opened by a
first ``GET /healthz`` each, not timed) and the jobs: each task POSTs its next job as soon as
its last one was answered. Latency: from just before a POST to its answer, on the client.

Exactly once: every job's record says done and claimed from the inbox once (``runs``);
processed/ holds one input per job, under its id, and failed/ none; images/ holds one image
per job, whose sidecars name every job's prompt once.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    BenchError,
    Log,
    Result,
    Table,
    daemon_env,
    home_folder,
    input_files,
    ms,
    percentile,
    wait_until,
    yes_no,
)
from standin_kit.process import DaemonProcess

NAME = "api"
TITLE = "HTTP API"
CLIENTS = 50
JOBS = 1000
QUICK_JOBS = 100
IDLE_REQUESTS = 50
HTTP_LINE = r"HTTP API and dashboard on http://\S+:(\d+)/"
DRAIN_SECONDS = 600.0  # every job done by then, or the benchmark fails
# The API writes each input whole under a hidden name, then renames it in: nothing to settle.
SETTINGS = {"SORA_BACKEND": "instant", "SORA_HTTP": "127.0.0.1:0", "SORA_SETTLE_SECONDS": "0"}


def prompt(number: int) -> str:
    return f"api benchmark job {number}: a quiet street"


async def idle_latency(base_url: str, count: int = IDLE_REQUESTS) -> list[float]:
    """``GET /healthz`` from one client, one after the other, before any job: the floor of a
    request's time, what the 50 clients' numbers add their waiting to."""
    latencies = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        (await http.get("/healthz")).raise_for_status()  # the connection, opened untimed
        for _ in range(count):
            started = time.perf_counter()
            (await http.get("/healthz")).raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies


async def submit_all(base_url: str, jobs: int, clients: int) -> tuple[list[float], list[str]]:
    """POST ``jobs`` jobs from ``clients`` concurrent tasks: each POST's latency, and the ids."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    ids: list[str] = []
    numbers = iter(range(jobs))  # shared: each task takes the next job when it is free

    async def client(http: httpx.AsyncClient) -> None:
        (await http.get("/healthz")).raise_for_status()  # its connection, opened untimed
        for number in numbers:
            started = time.perf_counter()
            answer = await http.post("/v1/jobs", json={"prompt": prompt(number)})
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 202:
                raise BenchError(f"POST /v1/jobs answered {answer.status_code}: {answer.text}")
            ids.append(answer.json()["id"])

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return latencies, ids


def records(home: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in (home / "records").glob("job_*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        found[data["id"]] = data
    return found


def exactly_once(home: Path, ids: list[str], jobs: int) -> dict[str, Any]:
    """What the folders and records say of each job: the numbers behind the verdict."""
    by_id = records(home)
    mine = [by_id[job_id] for job_id in ids if job_id in by_id]
    processed = input_files(home / "processed")
    tagged = {name.split("--", 1)[0] for name in processed}
    prompts = [
        json.loads(path.read_text(encoding="utf-8"))["prompt"]
        for path in (home / "images").glob("*.json")
    ]
    return {
        "jobs": jobs,
        "distinct_ids": len(set(ids)),
        "records_done": sum(r["state"] == "done" for r in mine),
        "claimed_once": sum(r["runs"] == 1 for r in mine),
        "processed": len(processed),
        "processed_ids_match": tagged == set(ids),
        "failed": len(input_files(home / "failed")),
        "images": len(list((home / "images").glob("*.png"))),
        "distinct_prompts": len(set(prompts)),
        "prompts_match": sorted(prompts) == sorted(prompt(n) for n in range(jobs)),
    }


def once_each(counts: dict[str, Any]) -> bool:
    jobs = counts["jobs"]
    numbers = ("distinct_ids", "records_done", "claimed_once", "processed")
    return (
        all(counts[key] == jobs for key in numbers)
        and counts["images"] == jobs
        and counts["failed"] == 0
        and counts["processed_ids_match"]
        and counts["prompts_match"]
    )


def measure(jobs: int, log: Log) -> dict[str, Any]:
    with home_folder(NAME, None) as home:
        env = daemon_env(home, None, **SETTINGS)
        with DaemonProcess(home, env, "run") as daemon:
            port = int(daemon.expect(HTTP_LINE, timeout=60)[1])
            daemon.ready(timeout=120)
            base_url = f"http://127.0.0.1:{port}"
            idle = asyncio.run(idle_latency(base_url))
            started = time.perf_counter()
            latencies, ids = asyncio.run(submit_all(base_url, jobs, CLIENTS))
            submitted = time.perf_counter()
            log(f"{NAME}: {jobs} jobs submitted in {submitted - started:.1f}s")
            try:
                drained = wait_until(
                    lambda: len(input_files(home / "processed")) >= jobs,
                    DRAIN_SECONDS,
                    f"{jobs} inputs in processed/",
                    interval=0.05,
                )
            except BenchError as exc:
                raise BenchError(daemon.failure(str(exc))) from None
        # Stopped: its output is read to the end.
        errors = [line for line in daemon.output if re.search(r"\] (ERROR|CRITICAL) ", line)]
        counts = exactly_once(home, ids, jobs)
    result: dict[str, Any] = {
        "clients": CLIENTS,
        "idle_healthz_p50_s": percentile(idle, 50),
        "latency_s": sorted(latencies),
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies),
        "submit_s": submitted - started,
        "drain_s": drained - started,
        "errors_logged": errors[:5],
        **counts,
    }
    log(
        f"{NAME}: POST p50 {ms(result['p50_s'])}, p99 {ms(result['p99_s'])}; all done in "
        f"{result['drain_s']:.1f}s; exactly once: {yes_no(once_each(counts))}"
    )
    return result


def run(quick: bool, log: Log) -> Result:
    jobs = QUICK_JOBS if quick else JOBS
    r = measure(jobs, log)
    once = once_each(r)
    latency = Table(
        ["jobs", "clients", "POST p50", "POST p99", "POST max", "submitted in", "submitted/s"],
        [
            [
                f"{jobs:,}",
                str(r["clients"]),
                ms(r["p50_s"]),
                ms(r["p99_s"]),
                ms(r["max_s"]),
                f"{r['submit_s']:.1f} s",
                f"{jobs / r['submit_s']:.0f}",
            ]
        ],
        title="POST /v1/jobs, answered while the daemon works on the jobs already queued; "
        f"before them, one client alone: GET /healthz p50 {ms(r['idle_healthz_p50_s'])}",
    )
    processed = Table(
        ["criterion", "measured", "met"],
        [
            [
                "every job done and claimed once (its record)",
                f"{r['records_done']:,} done, {r['claimed_once']:,} claimed once",
                yes_no(r["records_done"] == r["claimed_once"] == jobs),
            ],
            [
                "one input per job in processed/, none in failed/",
                f"{r['processed']:,} processed, {r['failed']} failed",
                yes_no(r["processed"] == jobs and r["processed_ids_match"] and not r["failed"]),
            ],
            [
                "one image per job, each job's prompt once",
                f"{r['images']:,} images, {r['distinct_prompts']:,} prompts",
                yes_no(r["images"] == jobs and r["prompts_match"]),
            ],
            [
                "first POST to the last input in processed/",
                f"{r['drain_s']:.1f} s ({jobs / r['drain_s']:.0f} jobs/s)",
                "n/a",
            ],
        ],
    )
    notes = [
        f"`watcher.py run`, `SORA_BACKEND=instant` (a 64x64 PNG at once), one worker, "
        f"`SORA_SETTLE_SECONDS=0`; {CLIENTS} asyncio tasks of one `httpx.AsyncClient`, each "
        'POSTing `{"prompt": ...}` (a different prompt each) as soon as its last one was '
        "answered. The worker runs in the same process as the API, so the latency includes "
        "its share of the interpreter.",
        "Latency is not judged (the issue sets no target); the goal is exactly once.",
    ]
    if r["errors_logged"]:
        notes.append("Errors in the daemon's log: " + "; ".join(r["errors_logged"]))
    return Result(
        name=NAME,
        title=TITLE,
        goal=f"{jobs:,} jobs submitted through the API at {CLIENTS} concurrent clients, each "
        "processed exactly once; POST /v1/jobs latency p50/p99 measured",
        met=yes_no(once),
        tables=[latency, processed],
        notes=notes,
        raw=r,
        headline=f"POST p50 {ms(r['p50_s'])}, p99 {ms(r['p99_s'])} at {CLIENTS} clients; "
        f"{jobs:,} jobs done in {r['drain_s']:.0f} s, exactly once: {yes_no(once)}",
        quick=quick,
    )

"""The benchmarks in quick mode (tiny sizes), through the same code as ``python -m bench``.

Only sanity is asserted (numbers measured, inputs drained, memory read), never speed: these
tests are here so that the benchmarks cannot rot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench import api, backlog, detection, openai, overhead, report, sdxl, soak, throughput
from bench.harness import Result, bench_processes, say

pytestmark = pytest.mark.e2e

ORDER = ["detection", "overhead", "throughput", "backlog", "soak", "openai", "api", "diffusers"]


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    yield
    assert bench_processes() == [], "a benchmark left a process running"


def sane(result: Result) -> dict[str, Any]:
    assert result.met not in ("error", ""), result.notes
    assert result.quick
    assert result.tables and all(t.rows for t in result.tables)
    assert "**Quick mode" in report.render(
        {k: "?" for k in ("date", "cpu", "cores", "memory", "kernel", "python")}
        | {"chromium": "?", "playwright": "?", "watchdog": "?"},
        [result],
        ORDER,
    )
    return result.raw


def test_detection_measures_claim_latencies() -> None:
    raw = sane(detection.run(True, say))
    cases = raw["cases"]
    assert len(cases) == 4
    for case in cases:
        assert case["claim_s"] and all(0 < s < 60 for s in case["claim_s"])
        assert all(c <= d for c, d in zip(case["claim_s"], case["processed_s"], strict=True))


def test_overhead_compares_warm_and_naive() -> None:
    raw = sane(overhead.run(True, say))
    delay = raw["delay_s"]
    assert all(per_image > delay for per_image in raw["warm_per_image_s"])
    assert all(wall > delay for run in raw["naive_per_job_s"] for wall in run)
    assert len(raw["sidecar_duration_s"]) == raw["jobs"]


def test_throughput_counts_images_per_second() -> None:
    result = throughput.run(True, say)
    raw = sane(result)
    walls = [v for k, v in raw.items() if k.startswith("c1 ")]
    assert walls and all(w > 0 for run in walls for w in run)


def test_backlog_drains_everything_and_reads_rss() -> None:
    raw = sane(backlog.run(True, say))
    [drained] = raw["results"]
    assert drained["complete"] and drained["processed"] == drained["inputs"] == 100
    assert drained["drain_s"] > 0
    assert 10 * 1024 < drained["peak_rss_kib"] < 2 * 1024 * 1024
    [long_input] = raw["long_inputs"]
    assert long_input["complete"] and long_input["prompts_done"] == long_input["lines"] == 20


def test_soak_reads_daemon_and_browser_memory() -> None:
    raw = sane(soak.run(True, say))
    samples = raw["samples"]
    assert samples[-1]["generations"] - samples[0]["generations"] >= raw["generations"]
    assert all(s["daemon_rss"] > 0 for s in samples)
    assert any(s["browser_rss"] > 0 and s["browser_processes"] > 0 for s in samples)


def test_openai_backend_measures_its_four_numbers() -> None:
    raw = sane(openai.run(True, say))
    [run] = raw["throughput_runs"]
    assert 0 < run["first_call_s"] < run["answered_s"] < run["wall_s"]
    assert run["peak_in_flight"] == raw["concurrency"]
    answers = raw["answer_to_image_s"]
    assert len(answers["alone"]) == len(answers["one_input"]) == raw["singles"] > 0
    assert all(0 < s < 10 for case in answers.values() for s in case)
    memory = raw["memory"]
    assert memory["samples"] and all(rss > 10 * 1024 for _, _, rss in memory["samples"])
    assert memory["samples"][-1][1] == memory["images"]
    starts = raw["start_up_s"]
    assert len(starts) == 2 and all(s["ready"] > 0 for s in starts)
    assert all(s["waiting_ready"] > 0 and 0 < s["first_call"] < s["first_image"] for s in starts)


def test_api_submits_each_job_exactly_once() -> None:
    raw = sane(api.run(True, say))
    assert raw["jobs"] == raw["records_done"] == raw["processed"] == raw["images"] == 100
    assert 0 < raw["p50_s"] <= raw["p99_s"] <= raw["max_s"]


def test_diffusers_compares_a_plain_script_and_times_the_loads() -> None:
    pytest.importorskip("diffusers", reason="the local extra is not installed")
    raw = sane(sdxl.run(True, say))
    assert 0 < raw["generation_s"] < raw["daemon_s"] and raw["plain_s"] > 0
    assert raw["cold"]["import_s"] > 0 and raw["cold"]["load_s"] > 0
    assert all(t > 0 for times in raw["loads"].values() for t in times)

"""``python -m bench [--quick] [--only NAME[,NAME...]] [--out FILE] [--soak-generations N]``:
run the benchmarks and rewrite BENCHMARKS.md and bench/results.json.

``--quick``: tiny sizes; the report is printed, nothing is written unless ``--out`` is given.
``--out FILE``: write the report there instead, and leave BENCHMARKS.md and results.json be.
``--render``: run nothing; rewrite BENCHMARKS.md from results.json (after editing
bench/findings.md, say).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import api, backlog, detection, openai, overhead, report, sdxl, soak, throughput
from bench.harness import Log, Result, Table, daemon_commit, machine, say
from standin_kit.process import ROOT

Benchmark = Callable[[bool, Log], Result]
BENCHMARKS: dict[str, tuple[str, Benchmark]] = {
    "detection": ("Detection latency", detection.run),
    "overhead": ("Per-job overhead", overhead.run),
    "throughput": ("Throughput", throughput.run),
    "backlog": ("Backlog", backlog.run),
    "soak": ("Soak", soak.run),
    "openai": ("OpenAI backend", openai.run),
    "api": ("HTTP API", api.run),
    "diffusers": (sdxl.TITLE, sdxl.run),
}
ORDER = list(BENCHMARKS)
RESULTS = Path(__file__).with_name("results.json")
REPORT = ROOT / "BENCHMARKS.md"


def run_one(name: str, quick: bool, soak_generations: int | None = None) -> Result:
    title, benchmark = BENCHMARKS[name]
    if name == "soak" and soak_generations:
        benchmark = partial(soak.run, generations=soak_generations)
    say(f"{name}: starting{' (quick)' if quick else ''}")
    code = daemon_commit()  # the code may change under a long run: say what each one ran
    started = time.perf_counter()
    try:
        result = benchmark(quick, say)
    except Exception as exc:  # one broken benchmark must not hide the others' numbers
        say(f"{name}: FAILED: {exc}")
        result = Result(name, title, goal="-", met="error", tables=[], notes=[f"`{exc}`"])
        result.headline = "error: " + str(exc).splitlines()[0][:120]
        result.quick = quick
    result.seconds = time.perf_counter() - started
    result.date = time.strftime("%Y-%m-%d %H:%M %Z") + f", daemon code at {code}"
    say(f"{name}: done in {result.seconds:.0f}s, goal met: {result.met}")
    return result


def load(path: Path) -> list[Result]:
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    results = []
    for item in data.get("results", []):
        item["tables"] = [Table(**t) for t in item["tables"]]
        results.append(Result(**item))
    return results


def save(path: Path, machine_info: dict[str, str], results: list[Result]) -> None:
    data: dict[str, Any] = {
        "machine": machine_info,
        "results": [dataclasses.asdict(r) for r in results],
    }
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help=f"run only these benchmarks (comma-separated, repeatable): {', '.join(ORDER)}",
    )
    parser.add_argument("--out", type=Path, help=f"write the report here (default {REPORT.name})")
    parser.add_argument(
        "--soak-generations", type=int, help="generations of the soak (default 500; quick 10)"
    )
    parser.add_argument(
        "--render", action="store_true", help="run nothing: rewrite the report from results.json"
    )
    options = parser.parse_args(argv)
    names = [n.strip() for item in options.only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    options.names = [n for n in ORDER if n in names] if names else ORDER
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    if options.render:
        stored = json.loads(RESULTS.read_text(encoding="utf-8"))
        out = options.out or REPORT
        out.write_text(report.render(stored["machine"], load(RESULTS), ORDER), encoding="utf-8")
        say(f"wrote {out} from {RESULTS.relative_to(ROOT)}")
        return 0
    machine_info = machine()
    say("machine: " + "; ".join(f"{k} {v}" for k, v in machine_info.items()))
    new = [run_one(name, options.quick, options.soak_generations) for name in options.names]
    if options.quick or options.out is not None:
        text = report.render(machine_info, new, ORDER)
        if options.out is None:
            print(text)
        else:
            options.out.write_text(text, encoding="utf-8")
            say(f"wrote {options.out}")
    else:
        kept = [r for r in load(RESULTS) if r.name not in options.names and not r.quick]
        results = kept + new
        save(RESULTS, machine_info, results)
        REPORT.write_text(report.render(machine_info, results, ORDER), encoding="utf-8")
        say(f"wrote {REPORT.relative_to(ROOT)} and {RESULTS.relative_to(ROOT)}")
    return 1 if any(r.met == "error" for r in new) else 0


if __name__ == "__main__":
    sys.exit(main())

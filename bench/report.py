"""BENCHMARKS.md from the results: an intro, the machine, a summary, one section per benchmark,
and the hand-written findings kept in ``bench/findings.md``."""

from __future__ import annotations

from pathlib import Path

from bench.harness import Result, Table

FINDINGS = Path(__file__).with_name("findings.md")

INTRO = """\
# Benchmarks

The numbers below are measured against the local stand-in of Sora (`sora_standin/`) on
127.0.0.1, with real daemon processes (`python watcher.py ...`) and, for the web backend, a real
headless Chromium driven by Playwright. Regenerate this file with:

```sh
make bench                               # every benchmark, about half an hour; rewrites this file
.venv/bin/python -m bench --only soak    # one (or several: --only detection,backlog)
.venv/bin/python -m bench --quick        # tiny sizes, a minute; prints, writes nothing
.venv/bin/python -m bench --only soak --soak-generations 2000 --out /tmp/soak.md
.venv/bin/python -m bench --render       # run nothing: rewrite this file from the results
```

`--only` re-runs some benchmarks and keeps the others' last results (`bench/results.json`);
`--out FILE` writes the report there and leaves this file and the results alone.
Each benchmark runs in its own temporary `SORA_HOME` with `SORA_WORKER_ID=bench`, stops its
daemons with SIGTERM, and leaves no process behind. `tests/test_bench_smoke.py` runs them all
in quick mode (`make test`), so that they cannot rot.

| # | benchmark | what it measures |
| --- | --- | --- |
| 1 | detection | time from an input's arrival in `inbox/` (the writer's `close()` or `rename()`) \
to its claim (the file leaves `inbox/`), `SORA_BACKEND=instant`; p50/p99 |
| 2 | overhead | time per image beyond the site's generation delay: a warm daemon vs a new \
browser per job (`watcher.py generate`) |
| 3 | throughput | images per second for 30 prompts with a 2 s delay, as a fraction of \
`SORA_CONCURRENCY / delay` |
| 4 | backlog | 1,000 / 3,000 / 10,000 inputs waiting at start-up, drained by \
`sora-watcher once` with the instant backend: time and peak RSS |
| 5 | soak | RSS of the daemon and of its Chromium processes over 500 generations |
| 6 | openai | `SORA_BACKEND=openai` against the Images API stand-in (`openai_standin/`): \
throughput at concurrency 8 against its limit, time from the API's answer to the published \
image, RSS over 1,000 images, start-up to READY=1 |
| 7 | api | `POST /v1/jobs` latency p50/p99 at 50 concurrent clients with the daemon working \
(instant backend); 1,000 jobs through the API, each processed exactly once |
| 8 | diffusers | `SORA_BACKEND=diffusers` on a tiny SDXL model on CPU: the daemon's overhead per \
image against a plain script, the model's load cold and warm |
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(t: Table) -> str:
    lines = []
    if t.title:
        lines += [f"*{t.title}*", ""]
    lines.append("| " + " | ".join(_cell(h) for h in t.headers) + " |")
    lines.append("|" + " --- |" * len(t.headers))
    for row in t.rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def section(number: int, result: Result) -> str:
    parts = [f"## {number}. {result.title}", ""]
    if result.quick:
        parts += ["**Quick mode: tiny sizes, the numbers say nothing.**", ""]
    parts += [f"**Goal:** {result.goal}. **Met:** {result.met}.", ""]
    for t in result.tables:
        parts += [table(t), ""]
    parts += [f"- {note}" for note in result.notes]
    if result.notes:
        parts.append("")
    parts += [f"*Measured {result.date}; the benchmark took {result.seconds:.0f} s.*", ""]
    return "\n".join(parts)


def render(machine: dict[str, str], results: list[Result], order: list[str]) -> str:
    by_name = {r.name: r for r in results}
    shown = [by_name[name] for name in order if name in by_name]
    parts = [INTRO, "## Machine", ""]
    parts.append(
        table(
            Table(
                ["", ""],
                [
                    ["date", machine["date"]],
                    ["daemon code at commit", machine.get("commit", "?")],
                    ["CPU", f"{machine['cpu']}, {machine['cores']} cores"],
                    ["RAM", machine["memory"]],
                    ["kernel", machine["kernel"]],
                    ["Python", machine["python"]],
                    ["Chromium", machine["chromium"]],
                    ["Playwright", machine["playwright"]],
                    ["watchdog", machine["watchdog"]],
                ],
            )
        )
    )
    parts += ["", "## Summary", ""]
    summary = [
        [str(order.index(r.name) + 1), r.title, r.goal, f"**{r.met}**", r.headline] for r in shown
    ]
    parts += [table(Table(["#", "benchmark", "goal", "met", "result"], summary)), ""]
    for r in shown:
        parts.append(section(order.index(r.name) + 1, r))
    if FINDINGS.is_file():
        parts += [FINDINGS.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(parts)

"""What every benchmark needs: home folders and the daemon's environment, memory readings from
/proc, inbox writers and a few statistics.

The daemon and the stand-in run as processes started by standin_kit.process (DaemonProcess,
StandInServer), as in the tests and the demo: each in a process group of its own, so that
stopping it can never leave a Chromium behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sora_standin import make_storage_state
from standin_kit import process
from standin_kit.process import PYTHON, ROOT, StandInServer

STANDIN_SECRET = "standin-secret"  # the default of `python -m sora_standin`
UNUSED_URL = "http://127.0.0.1:9"  # for the instant backend, which never goes online
WORKER_ID = "bench"
SUCCESS = "Statut : SUCCÈS"

Log = Callable[[str], None]


def say(message: str) -> None:
    """Progress on stderr; stdout stays for the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A benchmark could not measure what it wanted; the message says why."""


# -- results ----------------------------------------------------------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    title: str = ""


@dataclass
class Result:
    """One benchmark's outcome, rendered into BENCHMARKS.md and saved in bench/results.json."""

    name: str
    title: str
    goal: str
    met: str  # "yes", "no", "partly", "pending", "n/a"
    tables: list[Table]
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)  # the numbers behind the tables
    headline: str = ""  # one line for the summary table
    quick: bool = False
    seconds: float = 0.0  # how long the benchmark took
    date: str = ""  # when it was measured


# -- statistics -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mb(kib: float) -> str:
    return f"{kib / 1024:.1f} MB"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


# -- waiting ----------------------------------------------------------------------------------


def wait_until(
    ready: Callable[[], bool], timeout: float, what: str, interval: float = 0.01
) -> float:
    """Poll until ``ready()``; return the time it became true (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while not ready():
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
    return time.perf_counter()


# -- /proc ------------------------------------------------------------------------------------


def _status_field(pid: int, name: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM); None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def rss_kib(pid: int) -> int | None:
    return _status_field(pid, "VmRSS")


def hwm_kib(pid: int) -> int | None:
    return _status_field(pid, "VmHWM")


def pss_kib(pid: int) -> int | None:
    """Proportional set size: shared pages divided among their users (fair for Chromium)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return "?"


def descendants(root: int) -> list[int]:
    """Every process below ``root``, from the parent links in /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:
                text = stat.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # The command name is in parentheses and may hold spaces: split after the last one.
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def bench_processes() -> list[str]:
    """Processes below this one that a benchmark started and did not end: anything working
    in a benchmark home (a daemon, its Chromium) or a stand-in server."""
    left = []
    for pid in descendants(os.getpid()):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if "sora-bench-" in cwd or "-m sora_standin" in command:
            left.append(f"{pid} {command[:120]}")
    return left


@dataclass(frozen=True)
class Memory:
    """One look at a daemon and the processes it started (Playwright's driver, Chromium)."""

    daemon_rss: int
    driver_rss: int  # Playwright's node driver
    browser_rss: int  # every Chromium process, summed
    browser_pss: int
    browser_processes: int

    @classmethod
    def of(cls, pid: int) -> Memory:
        driver = browser = browser_pss = count = 0
        for child in descendants(pid):
            rss = rss_kib(child) or 0
            if command_name(child).startswith("node"):  # "node-MainThread"
                driver += rss
            else:
                browser += rss
                browser_pss += pss_kib(child) or 0
                count += 1
        return cls(rss_kib(pid) or 0, driver, browser, browser_pss, count)


# -- machine ----------------------------------------------------------------------------------


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"? ({exc})"
    lines = done.stdout.strip().splitlines()
    return lines[0] if lines else "?"


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    from importlib.metadata import version

    browser = _first_line([PYTHON, "-m", "sora_driver.browser"])
    return {
        "commit": daemon_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cores": str(os.cpu_count() or "?"),
        "memory": memory,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "playwright": version("playwright"),
        "watchdog": version("watchdog"),
        "chromium": f"{_first_line([browser, '--version'])} ({browser})",
    }


DAEMON_CODE = [
    "watcher.py",
    "sora_watcher",
    "sora_driver",
    "sora_standin",
    "openai_standin",
    "standin_kit",
]


def daemon_commit() -> str:
    """The last commit that changed the daemon's (or the stand-in's) code, and whether the
    working tree changes it further: the code a benchmark measured."""
    commit = _first_line(["git", "log", "-1", "--format=%h", "--", *DAEMON_CODE])
    changed = _first_line(["git", "status", "--porcelain", "--", *DAEMON_CODE])
    return commit + (" + uncommitted changes" if changed != "?" else "")


def setting_default(env_name: str) -> str | None:
    """The default of a setting this checkout's daemon knows, None if it knows no such setting
    (it ignores unknown SORA_* variables); a backend's own settings included."""
    from sora_watcher import config

    return next((o.default for o in config.all_options() if o.env == env_name), None)


def setting_exists(env_name: str) -> bool:
    return setting_default(env_name) is not None


# -- processes (started by standin_kit.process, as the tests and the demo start them) -------


class StandInProcess(StandInServer):
    """``python -m sora_standin --delay D``: the stand-in of Sora in a process of its own, so
    that its work does not share the benchmark's interpreter."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        super().__init__("sora_standin", "--delay", str(delay))


@contextlib.contextmanager
def home_folder(label: str, base_url: str | None, keep: bool = False) -> Iterator[Path]:
    """A fresh daemon home in the temp folder with a session for ``base_url`` and an inbox."""
    home = Path(tempfile.mkdtemp(prefix=f"sora-bench-{label}-"))
    try:
        (home / "inbox").mkdir()
        if base_url is not None:
            state = make_storage_state(base_url, "bench", STANDIN_SECRET)
            session = home / "session.json"
            session.write_text(json.dumps(state), encoding="utf-8")
            session.chmod(0o600)
        yield home
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


# What every benchmark's daemon runs with unless the benchmark says otherwise.
BENCH_SETTINGS = {"SORA_WORKER_ID": WORKER_ID, "SORA_TIMEOUT": "60", "SORA_RETRY_DELAY": "0.5"}


def daemon_env(home: Path, base_url: str | None, **extra: str) -> dict[str, str]:
    """The web backend (the benchmarks that need another say so) against ``base_url``, or an
    address never reached (the instant backend goes nowhere), with the benchmarks' settings."""
    return process.daemon_env(home, base_url or UNUSED_URL, **{**BENCH_SETTINGS, **extra})


# -- inbox ------------------------------------------------------------------------------------


# Each returns the time of the system call that makes the input complete, read just before
# the call: read after it, a thread switch in this process could put it after the claim.


def write_in_place(inbox: Path, name: str, text: str) -> float:
    """Write an input straight into the inbox; the time of its close()."""
    out = open(inbox / name, "w", encoding="utf-8")  # noqa: SIM115 (the close is timed)
    out.write(text)
    out.flush()
    published = time.perf_counter()
    out.close()
    return published


def publish_by_rename(inbox: Path, name: str, text: str) -> float:
    """Write aside in the inbox under an ignored name, then rename; the time of the rename."""
    temporary = inbox / f".{name}.tmp"
    temporary.write_text(text, encoding="utf-8")
    published = time.perf_counter()
    temporary.rename(inbox / name)
    return published


def move_in_from_outside(inbox: Path, name: str, text: str) -> float:
    """Write in a sibling folder, then rename into the inbox (README: "write them
    elsewhere ... and rename them into inbox/"); the time of the rename."""
    outbox = inbox.parent / "outbox"
    outbox.mkdir(exist_ok=True)
    (outbox / name).write_text(text, encoding="utf-8")
    published = time.perf_counter()
    (outbox / name).rename(inbox / name)
    return published


def names_in(folder: Path) -> set[str]:
    try:
        return {entry.name for entry in os.scandir(folder) if not entry.name.startswith(".")}
    except FileNotFoundError:
        return set()


def input_files(folder: Path) -> set[str]:
    """Inputs in processed/ or failed/ (not the .error.txt beside a failure)."""
    return {name for name in names_in(folder) if not name.endswith(".error.txt")}


def all_finished(home: Path, names: set[str]) -> Callable[[], bool]:
    """A test for ``wait_until``: every one of ``names`` is in processed/ or failed/."""

    def finished() -> bool:
        return names <= input_files(home / "processed") | input_files(home / "failed")

    return finished


def check_no_failures(home: Path) -> None:
    failed = home / "failed"
    reasons = sorted(failed.glob("*.error.txt")) if failed.is_dir() else []
    if reasons:
        raise BenchError(
            f"{len(reasons)} input(s) failed; first: {reasons[0].read_text(encoding='utf-8')}"
        )


def sidecars(home: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted((home / "images").rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "duration_s" in data:
            found.append(data)
    return found

"""What every benchmark needs: the stand-in and the daemon as processes, home folders, memory
readings from /proc, inbox writers and a few statistics.

Everything started here runs in a process group of its own, so that stopping it can never
leave a Chromium behind: SIGTERM first (the daemon closes its browser itself), SIGKILL to the
group only if something is still there after the wait.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sora_standin import make_storage_state

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STANDIN_SECRET = "standin-secret"  # the default of `python -m sora_standin`
UNUSED_URL = "http://127.0.0.1:9"  # for the instant backend, which never goes online
WORKER_ID = "bench"
STOP_SECONDS = 30.0
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


def setting_exists(env_name: str) -> bool:
    """Whether this checkout's daemon knows a setting (it ignores unknown SORA_* variables)."""
    from sora_watcher import config

    return any(name == env_name for name, _ in config.OPTIONS.values())


def setting_default(env_name: str) -> str | None:
    from sora_watcher import config

    return next((default for name, default in config.OPTIONS.values() if name == env_name), None)


# -- processes --------------------------------------------------------------------------------


def _end_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL whatever is left in a process group we created (a Chromium, a driver)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class Output:
    """A process's stdout, read line by line on a thread, kept for matching and diagnosis."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line from now on that matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(self.failure(f"timed out waiting for {pattern!r}"))
            try:
                line = self._new.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                raise BenchError(self.failure(f"process ended while waiting for {pattern!r}"))
            self.lines.append(line)
            match = regex.search(line)
            if match:
                return match

    def drain(self) -> list[str]:
        """Take in every line read so far; return all lines."""
        with contextlib.suppress(queue.Empty):
            while (line := self._new.get_nowait()) is not None:
                self.lines.append(line)
        return self.lines

    def count(self, text: str) -> int:
        return sum(text in line for line in self.drain())

    def finish(self, timeout: float = 5) -> list[str]:
        self._thread.join(timeout)
        return self.drain()

    def failure(self, why: str) -> str:
        tail = "\n".join(self.drain()[-30:])
        return f"{why}; last output lines:\n{tail}"


StoppedT = TypeVar("StoppedT", bound="StoppedOnExit")


class StoppedOnExit:
    """``with`` support for the processes below: ``stop()`` on the way out, whatever happened."""

    def stop(self) -> int | None:
        raise NotImplementedError

    def __enter__(self: StoppedT) -> StoppedT:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class StandInProcess(StoppedOnExit):
    """``python -m sora_standin --port 0 --delay D``, its URL read from its first line."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        command = [PYTHON, "-m", "sora_standin", "--port", "0", "--delay", str(delay)]
        self.process = spawn(command, ROOT)
        self.output = Output(self.process)
        try:
            self.base_url = self.output.expect(r"sora-standin listening on (\S+)", 30)[1]
        except BaseException:
            self.stop()
            raise

    def set_delay(self, delay: float) -> None:
        request = urllib.request.Request(
            self.base_url + "/_standin/config",
            data=json.dumps({"delay": delay}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
        self.delay = delay

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        _end_group(self.process)
        self.output.finish()


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


def daemon_env(home: Path, base_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORA_")}
    env.update(
        SORA_HOME=str(home),
        SORA_BACKEND="web",  # the benchmarks that need another backend say so
        SORA_BASE_URL=base_url or UNUSED_URL,
        SORA_WORKER_ID=WORKER_ID,
        SORA_TIMEOUT="60",
        SORA_RETRY_DELAY="0.5",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def spawn(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """A process in a process group of its own (so that its children, Chromium among them,
    can be ended with it), output and errors on one pipe."""
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        start_new_session=True,
    )


def spawn_watcher(home: Path, env: dict[str, str], args: tuple[str, ...]) -> subprocess.Popen[str]:
    """``python watcher.py <args>`` in a home folder."""
    return spawn([PYTHON, str(ROOT / "watcher.py"), *args], home, env)


class DaemonProcess(StoppedOnExit):
    """``python watcher.py <command>`` in a home folder, in a process group of its own."""

    def __init__(self, home: Path, env: dict[str, str], *args: str) -> None:
        self.home = home
        self.started = time.perf_counter()
        self.process = spawn_watcher(home, env, args)
        self.output = Output(self.process)
        self.max_rss_kib = 0  # ru_maxrss from wait4, once the process has ended

    @property
    def pid(self) -> int:
        return self.process.pid

    def ready(self, timeout: float = 120) -> float:
        """Wait for ``watching``: the browser is up and the session checked. Seconds taken."""
        self.output.expect(r"\] INFO +watching ", timeout)
        return time.perf_counter() - self.started

    def alive(self) -> bool:
        return self.process.returncode is None and self._reap(block=False) is None

    def _reap(self, block: bool) -> int | None:
        """``wait4`` rather than ``Popen.wait``: it also gives the peak RSS of the process."""
        if self.process.returncode is not None:
            return self.process.returncode
        try:
            pid, status, usage = os.wait4(self.process.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return self.process.wait()
        if pid == 0:
            return None
        self.max_rss_kib = usage.ru_maxrss  # kilobytes on Linux
        self.process.returncode = os.waitstatus_to_exitcode(status)
        return self.process.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.perf_counter() + timeout
        while (code := self._reap(block=False)) is None:
            if time.perf_counter() > deadline:
                raise BenchError(self.output.failure(f"still running after {timeout:g}s"))
            time.sleep(0.01)
        return code

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL the whole group if it does not end in time."""
        code: int | None = None
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                code = self.wait(STOP_SECONDS)
            except BenchError:
                say(f"daemon {self.pid} did not stop within {STOP_SECONDS:g}s: killing it")
                _end_group(self.process)
                code = self._reap(block=True)
        else:
            code = self.process.returncode
        _end_group(self.process)  # a Chromium the daemon left behind, if any
        self.output.finish()
        return code


def run_to_end(home: Path, env: dict[str, str], *args: str, timeout: float) -> tuple[int, str]:
    """A short-lived ``watcher.py`` command: its exit status and output."""
    process = spawn_watcher(home, env, args)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(process)
        output, _ = process.communicate()
        raise BenchError(f"{' '.join(args)} took over {timeout:g}s:\n{output[-3000:]}") from None
    finally:
        _end_group(process)
    return process.returncode, output


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

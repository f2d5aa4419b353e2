"""Processes for the tests, the benchmarks and the demo, started one way: the daemon
(``python watcher.py <command>`` in a home folder), a stand-in server (``python -m
sora_standin`` or ``openai_standin``) and short commands run to their end.

Test support, never installed: the environment built here puts this checkout on
``PYTHONPATH`` so that a child process finds the stand-ins the way the caller did.

A started process is in a process group of its own, so that stopping it can never leave a
Chromium (or a hook) behind: SIGTERM first, as systemd sends it (the daemon closes its browser
itself), then SIGKILL to the whole group, whatever is still there. Its output and errors come
through one pipe, read line by line on a thread (a full pipe never blocks the child); waits are
on events (a line, the end of the process through its pidfd), never on sleeps.

Exceptions::

    ProcessError         what a started process did not do
    ├── LineNotSeen      expect(): no matching line in time, or the process ended first
    └── StillRunning     wait(), run(): the process did not end in time
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

ROOT = Path(__file__).resolve().parent.parent  # the checkout
PYTHON = sys.executable
WATCHER = ROOT / "watcher.py"
STOP_SECONDS = 30.0  # SIGTERM to SIGKILL, as systemd's TimeoutStopSec (shorter)
READ_SECONDS = 5.0  # for the last lines once the process has ended
FAILURE_LINES = 40  # output lines shown when a wait fails

Echo = Callable[[str], None]
ProcessT = TypeVar("ProcessT", bound="Process")


class ProcessError(Exception):
    """A started process did not do what was waited for; the message ends with its output."""


class LineNotSeen(ProcessError):
    """No output line matched in time, or the process ended before one did."""


class StillRunning(ProcessError):
    """The process had not ended when the time was up."""


# -- environment ----------------------------------------------------------------------------


def python_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (the current environment) for a Python child: this checkout first on
    PYTHONPATH (the stand-ins are not installed) and output unbuffered (lines arrive as they
    are printed, not when a buffer fills)."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def daemon_env(
    home: Path, url: str | None = None, backend: str = "web", **settings: str
) -> dict[str, str]:
    """The environment of a daemon working in ``home``, against the stand-in at ``url``.

    No HTTP service unless ``settings`` give SORA_HTTP. The caller's SORA_* and OPENAI_*
    variables are left out (a developer's own settings or key
    must not leak into a test), and so is the checkout's .env: the daemon reads the one in its
    home. ``url`` is OPENAI_BASE_URL for the openai backend, SORA_BASE_URL otherwise;
    ``settings`` come last and win.
    """
    outside = {k: v for k, v in os.environ.items() if not k.startswith(("SORA_", "OPENAI_"))}
    env = python_env(outside)
    env.update(SORA_HOME=str(home), SORA_ENV_FILE=str(home / ".env"), SORA_BACKEND=backend)
    env["SORA_HTTP"] = ""  # no HTTP service unless the test asks (daemons would share a port)
    if url is not None:
        env["OPENAI_BASE_URL" if backend == "openai" else "SORA_BASE_URL"] = url
    env.update(settings)
    return env


# -- output ---------------------------------------------------------------------------------


class OutputReader:
    """A process's output, read line by line on a thread; the lines taken in are kept in
    ``lines``, for matching and for the message of a failed wait."""

    def __init__(self, stream: IO[str], echo: Echo | None = None) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()  # None: the end of the output
        self._ended = False
        self._echo = echo
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._new.put(line.rstrip("\n"))
        self._new.put(None)

    def _keep(self, line: str | None) -> None:
        if line is None:
            self._ended = True
            return
        self.lines.append(line)
        if self._echo is not None:
            self._echo(line)

    def _next(self, pattern: str, deadline: float) -> str:
        """The next line, waiting for it until ``deadline`` (time.monotonic())."""
        if not self._ended:
            try:
                self._keep(self._new.get(timeout=max(deadline - time.monotonic(), 0)))
            except queue.Empty:
                raise LineNotSeen(self.failure(f"timed out waiting for {pattern!r}")) from None
            if not self._ended:
                return self.lines[-1]
        raise LineNotSeen(self.failure(f"the process ended while waiting for {pattern!r}"))

    def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line from now on that matches ``pattern`` (a regular expression)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self._next(pattern, deadline))
            if match:
                return match

    def expect_count(self, pattern: str, count: int, timeout: float) -> None:
        """Wait until ``count`` lines, taken in so far or to come, match ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = sum(bool(regex.search(line)) for line in self.drain())
        while seen < count:
            seen += bool(regex.search(self._next(pattern, deadline)))

    def drain(self) -> list[str]:
        """Take in every line read so far, without waiting; all the lines."""
        with contextlib.suppress(queue.Empty):
            while not self._ended:
                self._keep(self._new.get_nowait())
        return self.lines

    def finish(self, timeout: float = READ_SECONDS) -> list[str]:
        """Once the process has ended: wait for the end of its output, take it all in."""
        self._thread.join(timeout)
        return self.drain()

    def failure(self, why: str) -> str:
        tail = "\n".join(self.drain()[-FAILURE_LINES:])
        return f"{why}; last output lines:\n{tail}"


# -- processes ------------------------------------------------------------------------------


def _popen(
    command: Sequence[str], cwd: Path, env: Mapping[str, str] | None, stderr: int
) -> subprocess.Popen[str]:
    """A child in a new session (its own process group), reading nothing from the terminal."""
    return subprocess.Popen(
        list(command),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        encoding="utf-8",
        start_new_session=True,
    )


def _end_group(pid: int) -> None:
    """SIGKILL whatever is left in the process group a child of ours leads (a Chromium)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class Process:
    """A started command, its output and errors read as ``output`` lines; ``with`` stops it.

    ``echo`` is called with each line as it is taken in (the demo shows the daemon's).
    """

    def __init__(
        self,
        command: Sequence[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
        *,
        echo: Echo | None = None,
    ) -> None:
        self.started = time.perf_counter()
        self.process = _popen(command, cwd, env, stderr=subprocess.STDOUT)
        self.max_rss_kib = 0  # its peak RSS (ru_maxrss from wait4), once it has ended
        # Readable once the process has ended: what wait() blocks on, instead of polling.
        self._pidfd = os.pidfd_open(self.process.pid)
        self._reap_lock = threading.Lock()  # a sampling thread may ask alive() meanwhile
        assert self.process.stdout is not None
        self.reader = OutputReader(self.process.stdout, echo)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> list[str]:
        """The lines taken in so far (by expect, wait, count, stop)."""
        return self.reader.lines

    def expect(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        return self.reader.expect(pattern, timeout)

    def expect_count(self, pattern: str, count: int, timeout: float = 60) -> None:
        self.reader.expect_count(pattern, count, timeout)

    def count(self, text: str) -> int:
        """How many lines read so far hold ``text``."""
        return sum(text in line for line in self.reader.drain())

    def failure(self, why: str) -> str:
        """``why``, followed by the last lines of the output: an error message."""
        return self.reader.failure(why)

    def _reap(self) -> int | None:
        """The exit status if the process has ended, else None. ``wait4`` rather than
        ``Popen.poll``: it also gives the peak RSS of the process."""
        with self._reap_lock:
            if self.process.returncode is not None:
                return self.process.returncode
            try:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped through self.process by its caller
                return self.process.wait()
            if pid == 0:
                return None
            self.max_rss_kib = usage.ru_maxrss  # kilobytes on Linux
            self.process.returncode = os.waitstatus_to_exitcode(status)
            return self.process.returncode

    def alive(self) -> bool:
        return self._reap() is None

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to end and for the rest of its output; its exit status."""
        if self._reap() is None:
            select.select([self._pidfd], [], [], timeout)
        code = self._reap()
        if code is None:
            raise StillRunning(self.failure(f"still running after {timeout:g}s"))
        if self._pidfd >= 0:  # the process is gone: nothing more to wait for
            os.close(self._pidfd)
            self._pidfd = -1
        self.reader.finish()
        return code

    def signal(self, signum: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        """What Ctrl-C in a terminal does: the signal goes to every process of the job."""
        os.killpg(self.pid, signum)

    def stop(self, grace: float = STOP_SECONDS) -> int:
        """SIGTERM, then SIGKILL to the whole group if the process has not ended within
        ``grace`` seconds (0: at once). Its group is ended either way: a Chromium the process
        left behind, if any."""
        if grace > 0 and self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.wait(grace)
            except StillRunning:
                print(f"pid {self.pid}: still running {grace:g}s after SIGTERM", file=sys.stderr)
        _end_group(self.pid)
        return self.wait(STOP_SECONDS)

    def __enter__(self: ProcessT) -> ProcessT:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class DaemonProcess(Process):
    """``python watcher.py <args>`` working in a home folder."""

    def __init__(
        self, home: Path, env: Mapping[str, str], *args: str, echo: Echo | None = None
    ) -> None:
        self.home = home
        super().__init__([PYTHON, str(WATCHER), *args], home, env, echo=echo)

    def ready(self, timeout: float = 120) -> float:
        """Wait for ``watching`` (the backend is up, the session checked); seconds taken."""
        self.expect(r"\] INFO +watching ", timeout)
        return time.perf_counter() - self.started


class StandInServer(Process):
    """``python -m <module> --port 0 <options>``, ``module`` a stand-in of this checkout
    (sora_standin, openai_standin); ``base_url`` read from the line it prints once listening."""

    def __init__(self, module: str, *options: str, timeout: float = 30) -> None:
        super().__init__([PYTHON, "-m", module, "--port", "0", *options], ROOT, python_env())
        try:
            self.base_url = self.expect(r" listening on (\S+)", timeout)[1]
        except BaseException:
            self.stop()
            raise


def run(
    command: Sequence[str], cwd: Path, env: Mapping[str, str] | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """A short command to its end, its output and errors apart; its group ended after."""
    process = _popen(command, cwd, env, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(process.pid)
        out, err = process.communicate()
        tail = (out + err)[-3000:]
        raise StillRunning(f"{' '.join(command)} took over {timeout:g}s:\n{tail}") from None
    finally:
        _end_group(process.pid)
    return subprocess.CompletedProcess(list(command), process.returncode, out, err)


def run_watcher(
    home: Path, env: Mapping[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python watcher.py <args>`` (once, generate, status) in a home folder, to its end."""
    return run([PYTHON, str(WATCHER), *args], home, env, timeout)


def run_standin(module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>``, a stand-in's command (make-session, a refused start)
    from this checkout, to its end."""
    return run([PYTHON, "-m", module, *args], ROOT, python_env(), timeout)

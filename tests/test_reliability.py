"""The queue's promises under crashes, concurrency and garbage: real processes, real folders."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from loguru import logger

from sora_standin import StandIn
from sora_watcher.backends.instant import CAPABILITIES, InstantBackend
from sora_watcher.config import resolve
from sora_watcher.daemon import Daemon as Worker
from tests.conftest import Daemon, daemon_env, drop
from tests.test_e2e import descendants, images_in

pytestmark = pytest.mark.e2e


def sidecars(home: Path) -> list[dict[str, object]]:
    return [json.loads(p.with_suffix(".json").read_text("utf-8")) for p in images_in(home)]


def leftovers(home: Path) -> list[str]:
    """Anything but the lock left in the worker folders: a journal, a staged image ..."""
    return [
        str(p.relative_to(home))
        for p in (home / "processing").rglob("*")
        if p.is_file() and p.name not in (".lock", ".status.json")
    ]


def instant_env(home: Path, standin: StandIn, **extra: str) -> dict[str, str]:
    return daemon_env(
        home, standin, **{"SORA_BACKEND": "instant", "SORA_SETTLE_SECONDS": "0.5", **extra}
    )


def test_kill_9_at_random_moments_gives_exactly_one_image_per_prompt(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    seed = int(os.environ.get("KILL_SEED", time.time()))
    rng = random.Random(seed)
    standin.delay = 0.4
    submitted_before = len(standin.submissions)
    prompts = {
        f"input{f}.txt": [f"kill test {seed} file {f} line {n}" for n in range(1, 4)]
        for f in range(4)
    }
    for name, lines in prompts.items():
        drop(home / "inbox", name, "\n".join(lines) + "\n")

    for _moment in range(20):
        daemon = Daemon(home, daemon_env(home, standin), "run")
        daemons.append(daemon)
        time.sleep(rng.uniform(0.2, 2.5))  # the random moment is the point of this test
        children = descendants(daemon.process.pid)
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait()
        for pid in children:  # what the OOM killer leaves behind, systemd would reap
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if len(list((home / "processed").glob("*.txt"))) == len(prompts):
            break
    final = Daemon(home, daemon_env(home, standin), "once")
    daemons.append(final)
    assert final.wait(timeout=120) == 0, f"seed {seed}:\n" + "\n".join(final.output)

    assert sorted(p.name for p in (home / "processed").iterdir()) == sorted(prompts), seed
    assert not [p for p in (home / "inbox").iterdir() if p.name != ".gitkeep"], seed
    assert leftovers(home) == [], seed
    per_line = collections.Counter((s["source"], s["line"]) for s in sidecars(home))
    expected = {(name, n) for name in prompts for n in range(1, 4)}
    assert set(per_line) == expected, seed
    assert set(per_line.values()) == {1}, f"seed {seed}: {per_line}"
    assert not list((home / "images").glob(".*")), "no partial image left behind"
    submitted = collections.Counter(s["prompt"] for s in standin.submissions[submitted_before:])
    assert set(submitted) == {p for lines in prompts.values() for p in lines}, seed
    assert set(submitted.values()) == {1}, f"seed {seed}: submitted twice: {submitted}"


def writer(inbox: Path, outside: Path, style: str, names: list[str]) -> None:
    for name in names:
        text = f"prompt of {name}\n"
        if style == "rename":
            drop(inbox, name, text)
        elif style == "in place":
            (inbox / name).write_text(text, encoding="utf-8")
        elif style == "slowly":
            with open(inbox / name, "w", encoding="utf-8") as out:
                out.write(text[:5])
                out.flush()
                time.sleep(0.02)  # the reader must not see this half
                out.write(text[5:])
        else:  # moved in from another folder of the same file system
            (outside / name).write_text(text, encoding="utf-8")
            (outside / name).rename(inbox / name)


def test_a_thousand_files_from_four_writers_are_each_processed_once(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    daemon = Daemon(home, instant_env(home, standin), "run")
    daemons.append(daemon)
    daemon.expect("watching")
    outside = home / "staging"
    outside.mkdir()
    styles = ["rename", "in place", "slowly", "moved in"]
    threads = [
        threading.Thread(
            target=writer,
            args=(home / "inbox", outside, style, [f"w{i}_{n:03d}.txt" for n in range(250)]),
        )
        for i, style in enumerate(styles)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    daemon.expect_count(r": 1 image\(s\), moved to", 1000, timeout=300)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0

    written = {f"w{i}_{n:03d}.txt" for i in range(4) for n in range(250)}
    processed = [p.name for p in (home / "processed").iterdir()]
    assert len(processed) == 1000 and set(processed) == written, "each input once, none twice"
    prompts = collections.Counter(s["prompt"] for s in sidecars(home))
    assert len(prompts) == 1000 and set(prompts.values()) == {1}
    assert all(str(p).startswith("prompt of w") and str(p).endswith(".txt") for p in prompts)
    assert not list((home / "failed").iterdir())


def test_two_daemons_on_one_inbox_never_share_an_input(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    first = Daemon(home, instant_env(home, standin, SORA_WORKER_ID="alpha"), "run")
    second = Daemon(home, instant_env(home, standin, SORA_WORKER_ID="beta"), "run")
    daemons += [first, second]
    first.expect("watching")
    second.expect("watching")
    for n in range(200):
        drop(home / "inbox", f"shared_{n:03d}.txt", f"shared prompt {n}\n")
    deadline = time.monotonic() + 120
    while (done := len(list((home / "processed").glob("*.txt")))) < 200:
        assert time.monotonic() < deadline, f"only {done} of 200 inputs processed in 120 s"
        time.sleep(0.1)  # two processes' progress: counting the folder is the event
    for daemon in (first, second):
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    shares = [sum("image(s), moved to" in line for line in d.output) for d in (first, second)]
    assert sum(shares) == 200, shares
    assert min(shares) > 0, f"both daemons took work: {shares}"
    prompts = collections.Counter(s["prompt"] for s in sidecars(home))
    assert len(prompts) == 200 and set(prompts.values()) == {1}


def test_a_second_daemon_with_the_same_worker_id_is_refused(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    first = Daemon(home, instant_env(home, standin), "run")
    daemons.append(first)
    first.expect("watching")
    second = Daemon(home, instant_env(home, standin), "run")
    daemons.append(second)
    assert second.wait(timeout=30) == 3
    assert any(f"pid {first.process.pid}" in line for line in second.output), second.output


def test_bad_inputs_fail_with_a_reason_and_the_daemon_goes_on(
    home: Path, standin: StandIn, daemons: list[Daemon], tmp_path_factory: pytest.TempPathFactory
) -> None:
    inbox = home / "inbox"
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "secret.txt"
    elsewhere.write_text("a prompt that lives outside the inbox\n", encoding="utf-8")
    bad = {
        "binary.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        "latin1.txt": ("un café crème\n".encode("latin-1"), "UTF-8"),
        "big.txt": (b"a fine prompt\n" * 100, "over the limit"),
        "long.txt": (("x" * 150 + "\n").encode(), "line 1: the prompt has 150 characters"),
        "empty.txt": (b"", "no prompt"),
        "new\nline.txt": (b"a prompt\n", "newline or control character"),
        "image.png": (b"not even a png", "unsupported input type"),
        "list.json": (b'{"prompt": "a", "aspect_ratio": ["1:1"]}', "aspect_ratio ['1:1']"),
    }
    daemon = Daemon(
        home,
        instant_env(
            home,
            standin,
            SORA_MAX_INPUT_BYTES="1000",
            SORA_MAX_PROMPT_CHARS="100",
            SORA_RESCAN_SECONDS="1",
        ),
        "run",
    )
    daemons.append(daemon)
    daemon.expect("watching")
    for name, (content, _) in bad.items():  # each written aside, then renamed in whole
        (inbox / f".{name}.tmp").write_bytes(content)
        (inbox / f".{name}.tmp").rename(inbox / name)
    (inbox / "folder.txt").mkdir()
    (inbox / "link.txt").symlink_to(elsewhere)
    os.mkfifo(inbox / "pipe.txt")  # reading it would block forever
    with open(os.fsencode(inbox) + b"/bad\xffname.txt", "wb") as out:
        out.write(b"a prompt under a name that is not UTF-8\n")
    (inbox / "draft.txt.tmp").write_text("still being written\n", encoding="utf-8")
    (inbox / ".hidden.txt").write_text("not an input\n", encoding="utf-8")
    fine = ["with space.txt", "quote'\"s.txt", "été à Lyon.txt"]
    for name in fine:
        drop(inbox, name, f"a prompt from {name}\n")

    daemon.expect_count(r"moved to .*failed", len(bad) + 4, timeout=30)
    daemon.expect_count(r"1 image\(s\), moved to .*processed", len(fine), timeout=30)
    assert any(r"new\nline.txt moved to" in line for line in daemon.output), "one line per record"
    (inbox / "draft.txt.tmp").rename(inbox / "draft.txt")  # done writing: now it counts
    daemon.expect(r"draft\.txt: 1 image\(s\)", timeout=30)

    failed = home / "failed"
    for name, (_, reason) in bad.items():
        assert (failed / name).exists(), name
        assert reason in (failed / f"{name}.error.txt").read_text("utf-8"), name
    assert (failed / "folder.txt").is_dir()
    assert "folder" in (failed / "folder.txt.error.txt").read_text("utf-8")
    assert (failed / "link.txt").is_symlink(), "the link itself was moved, not its target"
    assert "symbolic link" in (failed / "link.txt.error.txt").read_text("utf-8")
    assert elsewhere.read_text("utf-8").startswith("a prompt that lives outside")
    assert "not a regular file" in (failed / "pipe.txt.error.txt").read_text("utf-8")
    assert os.path.exists(os.fsencode(failed) + b"/bad\xffname.txt.error.txt")
    assert sorted(p.name for p in (home / "processed").iterdir()) == sorted([*fine, "draft.txt"])
    assert daemon.process.poll() is None
    assert (inbox / ".hidden.txt").exists()
    assert daemon.process.poll() is None, "still running"


def test_polling_mode_waits_for_a_slow_writer_to_finish(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    daemon = Daemon(
        home, instant_env(home, standin, SORA_POLLING="true", SORA_SETTLE_SECONDS="1.5"), "run"
    )
    daemons.append(daemon)
    daemon.expect("watching")
    with open(home / "inbox" / "slow.txt", "w", encoding="utf-8") as out:
        for n in range(5):
            out.write(f"slowly written prompt {n}\n")
            out.flush()
            time.sleep(0.6)  # a writer on a network share, slower than the polling interval
    daemon.expect(r"slow\.txt: 5 image\(s\)", timeout=30)


def test_a_dead_observer_is_restarted_and_nothing_is_missed(tmp_path: Path) -> None:
    settings = resolve(
        {"home": str(tmp_path), "settle_seconds": "0", "rescan_seconds": "60", "worker_id": "w"},
        {},
    )
    stop = threading.Event()
    worker = Worker(settings, InstantBackend, stop, CAPABILITIES)
    messages: list[str] = []
    sink = logger.add(messages.append, format="{message}")
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while worker.intake.observer is None and time.monotonic() < deadline:
            time.sleep(0.05)
        dead = worker.intake.observer
        assert dead is not None
        dead.stop()
        dead.join()
        drop(settings.inbox, "after.txt", "a prompt dropped while the observer was down\n")
        while not (settings.processed / "after.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (settings.processed / "after.txt").exists()
        assert worker.intake.observer is not dead
        assert any("observer stopped" in m for m in messages)
    finally:
        stop.set()
        thread.join()
        logger.remove(sink)


def test_the_same_prompt_on_two_lines_gives_two_images(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    drop(home / "inbox", "twice.txt", "the same prompt\nthe same prompt\n")
    daemon = Daemon(home, instant_env(home, standin, SORA_CONCURRENCY="2"), "once")
    daemons.append(daemon)
    assert daemon.wait() == 0, "\n".join(daemon.output)
    assert sorted(s["line"] for s in sidecars(home)) == [1, 2]
    assert (home / "processed" / "twice.txt").exists()


def test_a_file_moved_in_from_another_folder_is_taken_at_once(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    # The rename says the file is complete: neither the rescan nor a quiet period (both set
    # far beyond the test's wait) may be what lets it through, even for a file just written.
    env = instant_env(home, standin, SORA_RESCAN_SECONDS="600", SORA_SETTLE_SECONDS="600")
    daemon = Daemon(home, env, "run")
    daemons.append(daemon)
    daemon.expect("watching")
    outside = home / "elsewhere"
    outside.mkdir()
    (outside / "moved.txt").write_text("a prompt written elsewhere\n", encoding="utf-8")
    (outside / "moved.txt").rename(home / "inbox" / "moved.txt")
    daemon.expect(r"moved\.txt: 1 image\(s\)", timeout=10)


def test_a_probe_left_by_a_killed_worker_is_removed(tmp_path: Path) -> None:
    from sora_watcher.watch import PROBE_PREFIX, remove_stale_probes

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{PROBE_PREFIX}{dead.pid}"
    alive = tmp_path / f"{PROBE_PREFIX}{os.getpid()}"  # another worker's, still running
    stale.write_bytes(b"")
    alive.write_bytes(b"")
    remove_stale_probes(tmp_path)
    assert not stale.exists() and alive.exists()

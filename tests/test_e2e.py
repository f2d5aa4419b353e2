"""The whole flow: real daemon processes, real watchdog, real Chromium, the local stand-in."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from sora_driver.errors import SESSION_MISSING_MESSAGE
from sora_standin import StandIn
from tests.conftest import Daemon, daemon_env, drop

pytestmark = pytest.mark.e2e

PROMPTS = [
    "A lighthouse on a basalt cliff at dawn",
    "A watercolor map of an imaginary archipelago",
    "A hummingbird at a neon-blue flower, macro",
]
IMAGE_NAME = re.compile(r"^\d{8}_\d{6}_[0-9a-f]{5}(_\d+)?\.png$")
SUCCESS_LINE = re.compile(
    r'^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] Prompt utilisé : "(?P<prompt>.*)" Statut : SUCCÈS '
    r"Fichier : (?P<file>images/\S+\.png) Durée : \d+\.\ds$"
)
FAILURE_LINE = re.compile(
    r'^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] Prompt utilisé : "(?P<prompt>.*)" Statut : ÉCHEC '
    r"Erreur : (?P<error>\w+) \((?P<detail>.+)\)$"
)


def images_in(home: Path) -> list[Path]:
    return sorted((home / "images").glob("*.png"))


def log_lines(home: Path) -> list[str]:
    return [
        line
        for log in sorted((home / "logs").glob("*.log"))
        for line in log.read_text(encoding="utf-8").splitlines()
    ]


def assert_no_secret_leaked(home: Path, output: list[str]) -> None:
    state = json.loads((home / "session.json").read_text(encoding="utf-8"))
    everything = "\n".join(log_lines(home) + output)
    for cookie in state["cookies"]:
        assert cookie["value"] not in everything, f"cookie {cookie['name']} leaked"


def run_once(home: Path, standin: StandIn, *args: str, **env: str) -> Daemon:
    daemon = Daemon(home, daemon_env(home, standin, **env), *args)
    daemon.wait(timeout=120)
    return daemon


def test_three_line_prompt_file_gives_three_full_size_images(home: Path, standin: StandIn) -> None:
    drop(home / "inbox", "prompt.txt", "# a comment\n" + "\n\n".join(PROMPTS) + "\n")
    submitted_before = len(standin.submissions)

    daemon = run_once(home, standin, "once")

    assert daemon.process.returncode == 0, "\n".join(daemon.output)
    assert (home / "processed" / "prompt.txt").is_file()
    assert not (home / "inbox" / "prompt.txt").exists()
    images = images_in(home)
    assert len(images) == 3
    prompts_seen = []
    for image in images:
        assert IMAGE_NAME.match(image.name)
        with Image.open(image) as picture:
            assert picture.format == "PNG"
            # the stand-in's full size for a square request; its thumbnails are 256 px wide
            assert picture.size == (1024, 1024)
        sidecar = json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))
        digest = hashlib.sha256(sidecar["prompt"].encode()).hexdigest()[:5]
        assert image.name[16:21] == digest
        assert sidecar["source"] == "prompt.txt"
        assert sidecar["task_id"].startswith("task_")
        assert (sidecar["width"], sidecar["height"]) == (1024, 1024)
        assert sidecar["duration_s"] >= standin.delay
        prompts_seen.append(sidecar["prompt"])
    assert sorted(prompts_seen) == sorted(PROMPTS)
    assert [s["prompt"] for s in standin.submissions[submitted_before:]] == PROMPTS

    successes = [m for line in log_lines(home) if (m := SUCCESS_LINE.match(line))]
    assert [m["prompt"] for m in successes] == PROMPTS
    assert sorted(home / m["file"] for m in successes) == images


def test_second_run_keeps_the_first_runs_images(home: Path, standin: StandIn) -> None:
    drop(home / "inbox", "prompt.txt", PROMPTS[0] + "\n")
    assert run_once(home, standin, "once").process.returncode == 0
    [first] = images_in(home)
    first_bytes = first.read_bytes()

    drop(home / "inbox", "prompt.txt", PROMPTS[0] + "\n")
    assert run_once(home, standin, "once").process.returncode == 0

    assert len(images_in(home)) == 2
    assert first.read_bytes() == first_bytes
    # the second input did not overwrite the first in processed/ either
    assert sorted(p.name for p in (home / "processed").iterdir()) == ["prompt.txt", "prompt_2.txt"]
    assert len(list((home / "logs").glob("*.log"))) == 2  # one log file per run


def test_missing_session_stops_with_the_message_and_keeps_the_input(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    session = (home / "session.json").read_text("utf-8")
    (home / "session.json").unlink()
    drop(home / "inbox", "prompt.txt", PROMPTS[0] + "\n")

    once = run_once(home, standin, "once")
    assert once.process.returncode == 2
    assert SESSION_MISSING_MESSAGE in once.output  # printed exactly, on a line of its own
    assert any(line.endswith(SESSION_MISSING_MESSAGE) for line in log_lines(home))
    assert (home / "inbox" / "prompt.txt").is_file()

    # the daemon says the same, claims nothing, and goes on once the session is saved
    daemon = Daemon(home, daemon_env(home, standin), "run")
    daemons.append(daemon)
    daemon.expect(re.escape(SESSION_MISSING_MESSAGE) + "$")
    assert (home / "inbox" / "prompt.txt").is_file()
    (home / ".session.json.new").write_text(session, encoding="utf-8")
    (home / ".session.json.new").rename(home / "session.json")
    daemon.expect(r"prompt\.txt: 1 image\(s\), moved to .*processed")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_running_daemon_picks_up_drops_and_fails_empty_inputs(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    daemon = Daemon(home, daemon_env(home, standin), "run")
    daemons.append(daemon)
    daemon.expect(r"watching ")

    drop(home / "inbox", "empty.txt", "\n   \n# only a comment\n")
    daemon.expect(r"empty\.txt moved to .*failed")
    reason = (home / "failed" / "empty.txt.error.txt").read_text(encoding="utf-8")
    assert "no prompt" in reason

    # the daemon goes on: a file written in place (close-after-write) is picked up too
    (home / "inbox" / "later.txt").write_text(PROMPTS[1] + "\n", encoding="utf-8")
    daemon.expect(r"later\.txt: 1 image\(s\), moved to .*processed")
    assert len(images_in(home)) == 1
    # names still being written are left alone
    (home / "inbox" / "draft.txt.part").write_text("not yet", encoding="utf-8")
    (home / "inbox" / ".hidden.txt").write_text("not an input", encoding="utf-8")
    drop(home / "inbox", "third.txt", PROMPTS[2] + "\n")
    daemon.expect(r"third\.txt: 1 image\(s\)")
    assert (home / "inbox" / "draft.txt.part").exists()
    assert (home / "inbox" / ".hidden.txt").exists()

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):  # gone, maybe between the two looks
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_during_a_generation_stops_cleanly_and_restart_finishes(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    standin.delay = 6  # a generation that is still running when the signal comes
    submitted_before = len(standin.submissions)
    daemon = Daemon(home, daemon_env(home, standin, SORA_DEBUG="true"), "run")
    daemons.append(daemon)
    daemon.expect(r"watching ")
    drop(home / "inbox", "slow.txt", PROMPTS[0] + "\n")
    daemon.expect(r"submitted as task_")
    browser_processes = descendants(daemon.process.pid)
    assert browser_processes, "the browser runs as the daemon's child"

    stopped_at = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=15) == 0
    assert time.monotonic() - stopped_at < 10
    # Chromium's helpers may end a moment after the daemon: polled, with a deadline.
    deadline = time.monotonic() + 10
    while (left := [pid for pid in browser_processes if alive(pid)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not left, f"the browser was not closed: {left} still alive 10 s after the daemon"
    assert (home / "processing" / "w1" / "slow.txt").is_file()
    assert not images_in(home)
    assert_no_secret_leaked(home, daemon.output)

    standin.delay = 0.5
    restarted = Daemon(home, daemon_env(home, standin), "run")
    daemons.append(restarted)
    restarted.expect(r"resuming slow\.txt")
    restarted.expect(r"slow\.txt: 1 image\(s\), moved to .*processed")
    assert len(images_in(home)) == 1
    # the restart followed the task already submitted instead of paying for a second one
    assert [s["prompt"] for s in standin.submissions[submitted_before:]] == [PROMPTS[0]]
    restarted.signal(signal.SIGINT)  # Ctrl-C stops it cleanly too
    assert restarted.wait(timeout=15) == 0


def test_ctrl_c_in_a_terminal_during_a_generation(
    home: Path, standin: StandIn, daemons: list[Daemon]
) -> None:
    standin.delay = 30
    daemon = Daemon(home, daemon_env(home, standin, SORA_DEBUG="true"), "run")
    daemons.append(daemon)
    daemon.expect(r"watching ")
    drop(home / "inbox", "slow.txt", PROMPTS[0] + "\n")
    daemon.expect(r"submitted as task_")

    daemon.signal_group(signal.SIGINT)  # Chromium gets it too, and may die first

    assert daemon.wait(timeout=15) == 0
    assert not any("again in" in line for line in daemon.output), "no retry while stopping"
    assert (home / "processing" / "w1" / "slow.txt").is_file()


def test_generate_command_checklist(home: Path, standin: StandIn) -> None:
    prompt_file = home / "prompt.txt"
    prompt_file.write_text("", encoding="utf-8")
    empty = run_once(home, standin, "generate")
    assert empty.process.returncode != 0
    assert any("no prompt in this file" in line for line in empty.output)

    prompt_file.write_text(PROMPTS[2] + "\n", encoding="utf-8")
    made = run_once(home, standin, "generate", "--prompt-file", "prompt.txt")
    assert made.process.returncode == 0, "\n".join(made.output)
    assert len(images_in(home)) == 1
    assert prompt_file.exists(), "generate leaves its prompt file where it is"

    (home / "session.json").rename(home / "elsewhere.json")
    missing = run_once(home, standin, "generate")
    assert missing.process.returncode != 0
    assert SESSION_MISSING_MESSAGE in missing.output
    assert len(list((home / "logs").glob("*.log"))) == 3  # a log file every time


def test_failed_generation_is_logged_with_its_detail(home: Path, standin: StandIn) -> None:
    (home / "prompt.txt").write_text(PROMPTS[0] + "\n", encoding="utf-8")
    # a site that is not there: the page cannot load, a transient error, tried twice
    daemon = run_once(
        home,
        standin,
        "generate",
        SORA_BASE_URL="http://127.0.0.1:9",
        SORA_MAX_RETRIES="1",
    )
    assert daemon.process.returncode != 0
    failures = [m for line in log_lines(home) if (m := FAILURE_LINE.match(line))]
    assert failures, "\n".join(daemon.output)
    assert failures[0]["prompt"] == PROMPTS[0]
    assert failures[0]["error"] == "PageError"
    assert "127.0.0.1:9" in failures[0]["detail"]
    assert not images_in(home)
    assert_no_secret_leaked(home, daemon.output)


def test_generation_timeout_is_a_clear_error(home: Path, standin: StandIn) -> None:
    standin.delay = 20
    drop(home / "inbox", "prompt.txt", PROMPTS[0] + "\n")
    daemon = run_once(home, standin, "once", SORA_TIMEOUT="2", SORA_MAX_RETRIES="0")
    assert daemon.process.returncode != 0
    [failure] = [m for line in log_lines(home) if (m := FAILURE_LINE.match(line))]
    assert failure["error"] == "GenerationTimeout"
    assert re.search(r"task task_\w+ still (queued|running) after 2s", failure["detail"])
    report = (home / "failed" / "prompt.txt.error.txt").read_text(encoding="utf-8")
    assert "line 1: GenerationTimeout" in report
    captures = re.findall(r"capture: (\S+\.png), (\S+\.html)", failure["detail"])
    assert captures and all(Path(p).is_file() for p in captures[0]), "page saved for diagnosis"


def test_a_natal_chart_becomes_the_users_image_and_result_file(
    home: Path, standin: StandIn
) -> None:
    chart = (Path(__file__).parent / "data" / "theme_alice.json").read_text("utf-8")
    results = []
    for _ in range(2):  # a second chart for the same user replaces the result file
        drop(home / "inbox", "theme_alice.json", chart)
        daemon = run_once(home, standin, "once")
        assert daemon.process.returncode == 0, "\n".join(daemon.output)
        results.append(
            json.loads((home / "images" / "alice" / "result_alice.json").read_text("utf-8"))
        )

    images = sorted((home / "images" / "alice").glob("*.png"))
    assert len(images) == 2
    first, second = results
    assert first["user_id"] == second["user_id"] == "alice"
    assert Path(first["image"]) == images[0] and Path(second["image"]) == images[1]
    assert "Cancer sun" in first["prompt"] and first["prompt"] == second["prompt"]
    assert standin.submissions[-1]["prompt"] == first["prompt"]
    assert any("prompt built from the chart" in line for line in log_lines(home))
    assert sorted(p.name for p in (home / "processed").iterdir()) == [
        "theme_alice.json",
        "theme_alice_2.json",
    ]


def test_a_csv_with_a_bad_row_keeps_the_good_rows_images(home: Path, standin: StandIn) -> None:
    drop(
        home / "inbox",
        "prompts.csv",
        "prompt,name\na red fox at dawn,foxes\nan owl,../../etc\na grey heron,\n",
    )
    daemon = run_once(home, standin, "once", SORA_BACKEND="instant")
    assert daemon.process.returncode != 0
    assert len(list((home / "images" / "foxes").glob("*.png"))) == 1
    assert len(images_in(home)) == 1  # the heron, in images/ itself
    report = (home / "failed" / "prompts.csv.error.txt").read_text("utf-8")
    assert "line 3: InputError: row at line 3: name '../../etc' is not allowed" in report
    assert "line 2: done" in report and "line 4: done" in report

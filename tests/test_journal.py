"""The journal on disk: a snapshot line then one line per change, real files throughout."""

from __future__ import annotations

import json
import random
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from sora_driver.errors import SessionExpired
from sora_watcher.inputs import Prompt
from sora_watcher.journal import Entry, Journal, PromptState, Staged
from tests.test_units import ScriptedBackend, make_daemon

ODD_TEXT = "a cat\non two lines, \u2028 a line separator, accents: déjà vu, 猫"


def start(tmp_path: Path, count: int, name: str = "in.txt") -> Journal:
    prompts = [Prompt(f"prompt {n}", n + 1) for n in range(count)]
    return Journal.start(tmp_path / name, prompts)


def same(loaded: Journal, journal: Journal) -> None:
    assert [e.to_dict() for e in loaded.entries] == [e.to_dict() for e in journal.entries]
    for name in ("input_name", "created_at", "outcome", "final", "reason"):
        assert getattr(loaded, name) == getattr(journal, name), name


def lines_of(journal: Journal) -> list[bytes]:
    return journal.path.read_bytes().split(b"\n")[:-1]


def test_a_journal_round_trips_after_many_changes(tmp_path: Path) -> None:
    rng = random.Random(7)
    journal = start(tmp_path, 50)
    for _ in range(400):
        entry = rng.choice(journal.entries)
        entry.state = rng.choice(list(PromptState))
        entry.attempts += 1
        entry.task_id = f"task_{rng.randrange(10**6)}"
        entry.started_at = entry.started_at or rng.random()
        entry.staged = [Staged(f".{entry.attempts}.png", {"prompt": ODD_TEXT, "n": 1.5})]
        entry.staged[0].target = rng.choice([None, "x.png"])
        entry.images = [f"{entry.attempts}.png"]
        entry.error = rng.choice([None, {"class": "TaskFailed", "detail": ODD_TEXT}])
        journal.save(entry)
    journal.outcome, journal.reason = "failed", ODD_TEXT
    journal.save()
    journal.final = "in_2.txt"
    journal.save()

    loaded = Journal.load(journal.path)
    same(loaded, journal)
    assert all(isinstance(e.state, PromptState) for e in loaded.entries)
    assert [e.index for e in loaded.entries] == list(range(50))
    assert len(lines_of(journal)) == 1 + 400 + 2  # one snapshot, then one line per change


def test_every_field_of_an_entry_is_kept() -> None:
    kept = set(Entry(1, "x", {}).to_dict())
    # its place in the journal, and a retry time that a restart forgets (it tries at once)
    assert kept == {f.name for f in fields(Entry)} - {"index", "retry_at"}


def test_the_cost_of_a_step_does_not_grow_with_the_input(tmp_path: Path) -> None:
    """Each step appends one line the same size for 10 prompts as for 2,000."""
    grown = {}
    for count in (10, 2000):
        journal = start(tmp_path, count, f"in{count}.txt")
        before = journal.path.stat().st_size
        entry = journal.entries[7]  # the same prompt on the same line in both
        for state in (PromptState.SUBMITTING, PromptState.SUBMITTED, PromptState.DONE):
            entry.state = state
            journal.save(entry)
        journal.outcome = "processed"
        journal.save()
        grown[count] = journal.path.stat().st_size - before
        assert Journal.load(journal.path).entries[7].state is PromptState.DONE
    assert grown[10] == grown[2000]
    assert grown[2000] < 2000
    assert (tmp_path / "in2000.txt.state.json").stat().st_size > 100 * grown[2000]


def test_many_retries_are_folded_into_a_new_snapshot(tmp_path: Path) -> None:
    journal = start(tmp_path, 2)
    entry = journal.entries[1]
    for _ in range(500):  # far more changes than 10 per entry
        entry.attempts += 1
        journal.save(entry)
    assert len(lines_of(journal)) <= 1 + 10 * 2 + 100
    assert Journal.load(journal.path).entries[1].attempts == 500


@pytest.mark.parametrize(
    "torn",
    [
        "half a line",  # the crash came in the middle of the write
        "zeros",  # a power cut: the file grew, its last block never got its data
        "zeros then a newline",
    ],
)
def test_a_torn_last_line_is_ignored_and_what_came_before_survives(
    tmp_path: Path, torn: str
) -> None:
    journal = start(tmp_path, 3)
    journal.entries[0].state = PromptState.DONE
    journal.save(journal.entries[0])
    journal.entries[1].state = PromptState.SUBMITTED
    journal.entries[1].task_id = "task_1"
    journal.save(journal.entries[1])
    change = {"entry": 2, **journal.entries[2].to_dict(), "text": "déjà"}
    whole = json.dumps(change, ensure_ascii=False)
    tail = {
        "half a line": whole.encode()[: whole.encode().index("é".encode()) + 1],  # mid-character
        "zeros": bytes(40),
        "zeros then a newline": bytes(40) + b"\n",
    }[torn]
    with journal.path.open("ab") as out:
        out.write(tail)

    loaded = Journal.load(journal.path)
    same(loaded, journal)  # the torn step was never taken: the journal is as it was before it
    loaded.entries[2].state = PromptState.SUBMITTING
    loaded.save(loaded.entries[2])  # not after the torn line: in a new snapshot
    assert len(lines_of(loaded)) == 1
    again = Journal.load(journal.path)
    assert [e.state for e in again.entries] == [
        PromptState.DONE,
        PromptState.SUBMITTED,
        PromptState.SUBMITTING,
    ]
    assert again.entries[1].task_id == "task_1"


def rewrite_line(journal: Journal, number: int, line: bytes) -> None:
    lines = lines_of(journal)
    lines[number - 1] = line
    journal.path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b'{"entry": 1, "sta', "line 2 of in.txt.state.json is damaged"),
        (b"\x00" * 10, "line 2 of in.txt.state.json is damaged"),
        (b'{"entry": 9, "line": 1}', "no entry 9"),
        (b'{"entry": "1"}', "no entry '1'"),
        (b'{"outcome": "processed", "colour": "red"}', "unknown change"),
        (b"[1, 2]", "not an object"),
    ],
)
def test_a_damaged_line_before_the_last_is_a_damaged_journal(
    tmp_path: Path, line: bytes, says: str
) -> None:
    journal = start(tmp_path, 2)
    for entry in journal.entries:
        entry.state = PromptState.SUBMITTING
        journal.save(entry)
    rewrite_line(journal, 2, line)
    with pytest.raises(ValueError, match=re.escape(says)):
        Journal.load(journal.path)


def test_a_journal_that_does_not_start_with_a_snapshot_is_damaged(tmp_path: Path) -> None:
    journal = start(tmp_path, 2)
    journal.save(journal.entries[0])
    rewrite_line(journal, 1, b'{"entry": 0, "line": 1}')
    with pytest.raises(ValueError, match="does not start with a snapshot"):
        Journal.load(journal.path)
    journal.path.write_bytes(b"")
    with pytest.raises(ValueError, match="does not start with a snapshot"):
        Journal.load(journal.path)


OLD_FORMAT: dict[str, Any] = {  # as written before the journal was in lines
    "input_name": "in.txt",
    "entries": [
        {
            "line": 1,
            "text": "a cat",
            "options": {"aspect_ratio": "1:1", "variants": 1},
            "state": "done",
            "attempts": 1,
            "task_id": "task_01",
            "started_at": 1700000000.5,
            "submitting_since": 1700000001.0,
            "staged": [{"file": ".stage-1.png", "metadata": {"line": 1}, "target": "a.png"}],
            "images": ["a.png"],
            "error": None,
            "folder": None,
        },
        {
            "line": 2,
            "text": "a dog",
            "options": {"aspect_ratio": "1:1", "variants": 1},
            "state": "submitting",
            "attempts": 0,
            "task_id": None,
            "started_at": 1700000002.0,
            "submitting_since": 1700000002.0,
            "staged": [],
            "images": [],
            "error": None,
            "folder": "alice",
        },
    ],
    "created_at": 1699999999.0,
    "outcome": None,
    "final": None,
    "reason": None,
}


def test_a_journal_in_the_old_format_still_loads_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "in.txt.state.json"
    path.write_text(json.dumps(OLD_FORMAT, indent=1), encoding="utf-8")
    journal = Journal.load(path)
    assert journal.input_name == "in.txt" and journal.created_at == 1699999999.0
    first, second = journal.entries
    assert first.state is PromptState.DONE and first.staged[0].target == "a.png"
    assert second.state is PromptState.SUBMITTING and second.folder == "alice"
    assert [e.to_dict() for e in journal.entries] == OLD_FORMAT["entries"]

    second.state, second.task_id = PromptState.SUBMITTED, "task_02"
    journal.save(second)  # rewritten in lines, not appended to the old document
    second.state = PromptState.DOWNLOADED
    journal.save(second)
    assert len(lines_of(journal)) == 2
    same(Journal.load(path), journal)


# -- through the daemon -----------------------------------------------------------------------


def stopped_after_the_first_line(tmp_path: Path) -> Path:
    """An input whose line 1 is done and line 2 was being submitted when the queue stopped."""
    daemon = make_daemon(tmp_path, ScriptedBackend({"b": [SessionExpired("null session")]}))
    daemon.folders.ensure()
    (daemon.folders.inbox / "in.txt").write_text("a\nb\n")
    daemon.run()
    path = Journal.path_for(daemon.folders.processing / "in.txt")
    states = [e.state for e in Journal.load(path).entries]
    assert states == [PromptState.DONE, PromptState.SUBMITTING]
    assert len(lines_of(Journal.load(path))) > 1  # changes were appended
    return path


def test_the_daemon_resumes_from_a_journal_with_a_torn_last_line(tmp_path: Path) -> None:
    path = stopped_after_the_first_line(tmp_path)
    with path.open("ab") as out:
        out.write(b'{"entry": 1, "state": "subm')
    backend = ScriptedBackend({})
    daemon = make_daemon(tmp_path, backend)
    daemon.run()
    assert backend.calls == ["b"]  # line 1 is not generated again
    assert (daemon.folders.processed / "in.txt").exists()
    assert len(list(daemon.settings.images.glob("*.png"))) == 2
    assert not path.exists()


def test_the_daemon_fails_an_input_whose_journal_is_damaged(tmp_path: Path) -> None:
    path = stopped_after_the_first_line(tmp_path)
    lines = path.read_bytes().split(b"\n")
    lines[1] = b"garbage"
    path.write_bytes(b"\n".join(lines))
    backend = ScriptedBackend({})
    daemon = make_daemon(tmp_path, backend)
    daemon.run()
    assert backend.calls == []
    report = (daemon.folders.failed / "in.txt.error.txt").read_text()
    assert "in.txt.state.json is damaged (line 2 of in.txt.state.json is damaged)" in report
    assert not path.exists()

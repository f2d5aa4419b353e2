"""Job records: every input gets one, a submitted job is checked like an inbox file, a retry
keeps the job's id and does not make again what was made. In-process, on real folders, with
the instant backend (``cli(... "once")``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sora_watcher.backends.instant import CAPABILITIES, REFUSE
from sora_watcher.cli import EXIT_FAILED, EXIT_OK, cli
from sora_watcher.config import resolve
from sora_watcher.folders import Folders
from sora_watcher.inputs import Rules
from sora_watcher.records import ID, JobStatus, Record, Records, id_of_file, new_id, tag, untag
from sora_watcher.submit import SubmitError, retry, submit
from sora_watcher.submit import digest as digest_of


@pytest.fixture(autouse=True)
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The files here are written whole before the run starts: no need to watch them settle."""
    monkeypatch.setenv("SORA_SETTLE_SECONDS", "0")


def once(home: Path) -> int:
    return cli("--home", str(home), "--backend", "instant", "--env-file", "none", "once")


def rules() -> Rules:
    return Rules(capabilities=CAPABILITIES)


def pngs(home: Path) -> list[Path]:
    return sorted((home / "images").rglob("*.png"))


def folders(home: Path) -> Folders:
    s = resolve({}, {"SORA_HOME": str(home)})
    return Folders.for_worker(s.inbox, s.processing, s.processed, s.failed, s.images, "w")


def test_the_id_travels_in_the_name_and_a_malformed_one_is_no_path(tmp_path: Path) -> None:
    job = new_id()
    assert untag(tag(job, "theme_alice.json")) == (job, "theme_alice.json")
    assert untag("theme_alice.json") == (None, "theme_alice.json")
    assert untag("job_12--x.txt") == (None, "job_12--x.txt")  # not an id of ours
    records = Records(tmp_path)
    assert records.load("../../etc/passwd") is None
    assert records.load(job) is None


def test_a_submitted_job_is_written_into_the_inbox_and_made_like_a_dropped_file(
    tmp_path: Path,
) -> None:
    records = Records(tmp_path / "records")
    job = {"prompts": ["a red fox", "a blue owl"], "aspect_ratio": "16:9"}
    done = submit(job, rules(), records, folders(tmp_path))
    record = done.record
    assert done.created and record.state is JobStatus.QUEUED and record.source == "api"
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == [record.file]  # no temporary
    (tmp_path / "inbox" / "by hand.txt").write_text("a green frog\n", "utf-8")

    assert once(tmp_path) == EXIT_OK

    ended = records.load(record.id)
    assert ended is not None and ended.state is JobStatus.DONE and ended.runs == 1
    assert [p.state for p in ended.prompts] == ["done", "done"]
    assert all((tmp_path / "images" / p.images[0]).is_file() for p in ended.prompts)
    assert (tmp_path / "processed" / record.file).is_file()  # the id stays in the name
    by_hand = [r for r in records.all() if r.source == "inbox"]
    assert [(r.name, r.state) for r in by_hand] == [("by hand.txt", JobStatus.DONE)]
    assert by_hand[0].final == str(tmp_path / "processed" / "by hand.txt")  # its own name
    assert len(pngs(tmp_path)) == 3


def test_a_submission_is_refused_with_the_inbox_message_naming_the_field(tmp_path: Path) -> None:
    records = Records(tmp_path / "records")
    inbox = tmp_path / "inbox"
    cases = [
        ({"prompt": "x", "variants": 9}, "variants", "variants 9 is not one of 1, 2, 3, 4"),
        ({"prompt": "x", "colour": "red"}, "colour", "unknown key(s) colour"),
        ({"prompts": []}, "prompts", "no prompt in this file"),
        ({"chart": {"planets": {}}, "user": "../x"}, "user", "user '../x' is not allowed"),
    ]
    for body, field, message in cases:
        with pytest.raises(SubmitError) as refused:
            submit(body, rules(), records, folders(tmp_path))
        assert message in str(refused.value)
        assert refused.value.field == field
    assert not inbox.exists() or not any(inbox.iterdir())  # nothing written for a bad job
    assert list(records.all()) == []


def test_one_idempotency_key_makes_one_job_even_sent_twice_at_once(tmp_path: Path) -> None:
    records = Records(tmp_path / "records")
    results: list[str] = []
    start = threading.Barrier(8)

    def client() -> None:
        start.wait()
        done = submit({"prompt": "same"}, rules(), records, folders(tmp_path), "key-1")
        results.append(done.record.id)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert len(list((tmp_path / "inbox").iterdir())) == 1
    with pytest.raises(SubmitError, match="Idempotency-Key was used for another job") as other:
        submit({"prompt": "different"}, rules(), records, folders(tmp_path), "key-1")
    assert other.value.status == 409


def test_a_retry_keeps_the_id_and_makes_only_what_failed(tmp_path: Path) -> None:
    records = Records(tmp_path / "records")
    job = {"prompts": ["a red fox", f"a wolf {REFUSE}"]}
    record = submit(job, rules(), records, folders(tmp_path)).record

    assert once(tmp_path) == EXIT_FAILED
    failed = records.load(record.id)
    assert failed is not None and failed.state is JobStatus.FAILED
    assert [p.state for p in failed.prompts] == ["done", "failed"]
    assert failed.prompts[1].error is not None
    assert failed.prompts[1].error["class"] == "ContentRejected"
    assert failed.prompts[1].hint == "the service refused this prompt: reword it."
    assert failed.reason is not None and "ContentRejected" in failed.reason
    assert (tmp_path / "failed" / f"{record.file}.error.txt").is_file()
    made = pngs(tmp_path)
    assert len(made) == 1

    retry(failed, records, folders(tmp_path))
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == [record.file]
    assert not (tmp_path / "failed" / f"{record.file}.error.txt").exists()
    assert records.load(record.id).state is JobStatus.QUEUED  # type: ignore[union-attr]

    assert once(tmp_path) == EXIT_FAILED  # the refused prompt is refused again
    again = records.load(record.id)
    assert again is not None and again.runs == 2 and again.state is JobStatus.FAILED
    assert again.prompts[0].images == failed.prompts[0].images  # kept, not made again
    assert pngs(tmp_path) == made
    with pytest.raises(SubmitError, match="only a failed job is retried"):
        retry(Record(new_id(), "x.txt", "api", JobStatus.DONE), records, folders(tmp_path))


def test_the_retry_command_sends_back_by_id_or_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text(f"one {REFUSE}\n", "utf-8")
    (inbox / "b.txt").write_text(f"two {REFUSE}\n", "utf-8")
    assert once(tmp_path) == EXIT_FAILED
    failed = sorted(p.name for p in (tmp_path / "failed").iterdir())
    assert failed == ["a.txt", "a.txt.error.txt", "b.txt", "b.txt.error.txt"]
    first, second = sorted(Records(tmp_path / "records").all(), key=lambda r: r.name)

    home = ["--home", str(tmp_path), "--env-file", "none"]
    assert cli(*home, "retry", first.id) == EXIT_OK
    assert [p.name for p in inbox.iterdir()] == [first.file]
    assert cli(*home, "retry", "--all") == EXIT_OK
    assert sorted(p.name for p in inbox.iterdir()) == sorted([first.file, second.file])
    assert cli(*home, "retry", "nothing.txt") == EXIT_FAILED
    assert "no such job id, nor file" in capsys.readouterr().err


def test_a_record_is_whole_json_at_every_moment(tmp_path: Path) -> None:
    records = Records(tmp_path)
    record = Record(new_id(), "x.txt", "inbox")
    records.save(record)
    text = (tmp_path / f"{record.id}.json").read_text("utf-8")
    assert json.loads(text)["state"] == "queued"
    assert [p.name for p in tmp_path.iterdir()] == [f"{record.id}.json"]  # no leftovers


def test_old_finished_records_and_keys_go_and_the_others_stay(tmp_path: Path) -> None:
    records = Records(tmp_path)
    old = Record(new_id(), "old.txt", "inbox", JobStatus.DONE, created_at=1000.0)
    old.finished_at = 2000.0
    waiting = Record(new_id(), "waiting.txt", "api", JobStatus.QUEUED, created_at=1000.0)
    recent = Record(new_id(), "recent.txt", "inbox", JobStatus.FAILED, created_at=1000.0)
    recent.finished_at = 40 * 86400.0
    for record in (old, waiting, recent):
        records.save(record)
    assert records.prune(30, now=45 * 86400.0) == 1
    assert {r.name for r in records.all()} == {"waiting.txt", "recent.txt"}
    assert records.prune(0, now=10**12) == 0  # 0: kept for ever


def test_once_tells_the_webhook_before_it_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server

    got: list[dict[str, object]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("SORA_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
        (tmp_path / "inbox").mkdir()
        (tmp_path / "inbox" / "a.txt").write_text("a fox\n", "utf-8")
        assert once(tmp_path) == EXIT_OK
    finally:
        server.shutdown()
    assert [(e["type"], e["data"]["name"]) for e in got] == [("job.done", "a.txt")]  # type: ignore[index]
    assert not list((tmp_path / "outbox").glob("msg_*"))


def test_a_request_sent_again_after_a_crash_gets_its_job_written(tmp_path: Path) -> None:
    records = Records(tmp_path / "records")
    here = folders(tmp_path)
    # The first request bound its key, then died before its record and its file were written.
    records.bind("key-9", "job_" + "0" * 20, digest_of({"prompt": "a fox"}))
    again = submit({"prompt": "a fox"}, rules(), records, here, "key-9")
    assert again.record.id == "job_" + "0" * 20 and not again.created
    assert [p.name for p in here.inbox.iterdir()] == [again.record.file]
    # Sent a third time, while the daemon has it: nothing more is written.
    (here.processing).mkdir(parents=True)
    (here.inbox / again.record.file).rename(here.processing / again.record.file)
    third = submit({"prompt": "a fox"}, rules(), records, here, "key-9")
    assert third.record.id == again.record.id and list(here.inbox.iterdir()) == []


def test_a_damaged_record_is_skipped_and_the_input_still_made(tmp_path: Path) -> None:
    records = Records(tmp_path / "records")
    record = submit({"prompt": "a fox"}, rules(), records, folders(tmp_path)).record
    records.path(record.id).write_text("{not json", "utf-8")
    assert records.load(record.id) is None and list(records.all()) == []
    assert once(tmp_path) == EXIT_OK
    made = records.load(record.id)
    assert made is not None and made.state is JobStatus.DONE and len(pngs(tmp_path)) == 1


def test_a_retry_that_died_half_way_can_be_done_again(tmp_path: Path) -> None:
    records = Records(tmp_path / "records")
    record = submit({"prompt": f"x {REFUSE}"}, rules(), records, folders(tmp_path)).record
    assert once(tmp_path) == EXIT_FAILED
    failed = records.load(record.id)
    assert failed is not None
    failed.state = JobStatus.QUEUED  # saved by retry(), which then died before the move
    records.save(failed)
    retry(failed, records, folders(tmp_path))
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == [record.file]


class Watched(Records):
    """Records that tell when a retry looks again at a job's record."""

    looked = threading.Event()

    def load(self, job_id: str) -> Record | None:
        self.looked.set()
        return super().load(job_id)


def test_a_retry_asked_as_soon_as_the_job_failed_waits_for_its_input_to_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon writes "failed" in the record, then moves the input (seen racing in CI).
    records = Watched(tmp_path / "records")
    record = submit({"prompt": f"x {REFUSE}"}, rules(), records, folders(tmp_path)).record
    assert once(tmp_path) == EXIT_FAILED
    failed = records.load(record.id)
    assert failed is not None and failed.claimed is not None
    in_failed = tmp_path / "failed" / record.file
    in_failed.rename(failed.claimed)  # as it is between the record's end and the move
    failed.final = None
    records.save(failed)
    records.looked.clear()

    def daemon_moves_it() -> None:
        if records.looked.wait(10):
            Path(failed.claimed or "").rename(in_failed)

    mover = threading.Thread(target=daemon_moves_it)
    mover.start()
    retry(failed, records, folders(tmp_path))
    mover.join()
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == [record.file]

    # A daemon that died between the two: a clear answer, not a wait without end.
    monkeypatch.setattr("sora_watcher.submit.MOVE_WAIT", 0.05)
    assert once(tmp_path) == EXIT_FAILED
    again = records.load(record.id)
    assert again is not None and again.claimed is not None
    in_failed.rename(again.claimed)
    with pytest.raises(SubmitError, match="still on its way") as refused:
        retry(again, records, folders(tmp_path))
    assert refused.value.status == 409


def test_two_retries_of_one_job_at_once_send_it_back_once(tmp_path: Path) -> None:
    records = Records(tmp_path / "records")
    record = submit({"prompt": f"x {REFUSE}"}, rules(), records, folders(tmp_path)).record
    assert once(tmp_path) == EXIT_FAILED
    start = threading.Barrier(2)
    answers: list[str] = []

    def ask() -> None:
        failed = records.load(record.id)  # each reads "failed" before either moves it
        assert failed is not None and failed.state is JobStatus.FAILED
        start.wait()
        try:
            answers.append(retry(failed, records, folders(tmp_path)).name)
        except SubmitError as exc:
            answers.append(f"{exc.status}: {exc}")

    both = [threading.Thread(target=ask) for _ in range(2)]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join()
    assert sorted(answers)[0].startswith("409: ") and "only a failed job" in sorted(answers)[0]
    assert sorted(answers)[1] == record.file
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == [record.file]


def test_an_input_dropped_again_is_made_again_whole(tmp_path: Path) -> None:
    records = Records(tmp_path / "records")
    record = submit({"prompt": "a fox"}, rules(), records, folders(tmp_path)).record
    assert once(tmp_path) == EXIT_OK
    (tmp_path / "processed" / record.file).rename(tmp_path / "inbox" / record.file)
    assert once(tmp_path) == EXIT_OK
    assert len(pngs(tmp_path)) == 2  # not the first run's image passed off as new


def test_a_file_dropped_by_hand_keeps_its_id_through_its_moves(tmp_path: Path) -> None:
    dropped = tmp_path / "a.txt"
    dropped.write_text("x", "utf-8")
    first = id_of_file(dropped)
    dropped.rename(tmp_path / "b.txt")
    assert id_of_file(tmp_path / "b.txt") == first and ID.fullmatch(first)
    other = tmp_path / "c.txt"
    other.write_text("x", "utf-8")
    assert id_of_file(other) != first

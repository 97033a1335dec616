"""The protocol transcript, offline: the recorder's bounds and redaction, its binding to the attempt's
thread, what the exporter keeps (every failure, the last delivered ones per destination) and the
purge by age. The real servers' transcripts are in tests/integration/test_transcripts.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_helpers import open_delivery
from test_pipeline import World, offline, world

from ftpexport import secret, transcripts
from ftpexport.ledger import Ledger, open_ledger
from ftpexport.transport import transcript
from ftpexport.transport.base import Endpoint
from ftpexport.transport.transcript import Recorder

#: the fixtures of test_pipeline: no test here reaches the network; acme-motors, one FTP destination
#: on an in-memory server
__all__ = ["offline", "world"]


def _texts(recorder: Recorder) -> list[str]:
    return [entry["text"] for entry in recorder.entries()]


# --- bounds


def test_a_long_transcript_keeps_its_start_and_its_end_and_counts_what_it_left_out() -> None:
    recorder = Recorder(max_entries=10)
    for number in range(100):
        recorder.add("send", f"NOOP {number}")

    texts = _texts(recorder)

    assert texts[:5] == [f"NOOP {n}" for n in range(5)]
    assert texts[5].startswith("90 entries left out")
    assert texts[6:] == [f"NOOP {n}" for n in range(95, 100)]


def test_a_transcript_is_bounded_in_bytes_too() -> None:
    recorder = Recorder(max_bytes=20_000)
    for number in range(1000):
        recorder.add("reply", f"{number:04d} " + "x" * 995)

    entries = recorder.entries()
    size = sum(len(entry["text"]) for entry in entries)

    assert size <= 20_000
    assert entries[0]["text"].startswith("0000 ") and entries[-1]["text"].startswith("0999 ")
    assert f"{recorder.left_out} entries left out" in "".join(entry["text"] for entry in entries)
    assert recorder.left_out > 900


def test_one_entry_is_cut_at_a_length_and_says_how_much_was_cut() -> None:
    recorder = Recorder()
    recorder.add("reply", "211-" + "y" * (transcript.MAX_TEXT + 500))

    [text] = _texts(recorder)

    assert len(text) < transcript.MAX_TEXT + 100
    assert text.endswith("... (504 more characters)")


def test_each_entry_is_timed_from_the_start_of_the_attempt() -> None:
    recorder = Recorder()
    recorder.add("info", "connecting")
    recorder.add("send", "QUIT")

    entries = recorder.entries()

    assert [e["kind"] for e in entries] == ["info", "send"]
    assert 0 <= entries[0]["ms"] <= entries[1]["ms"]


# --- secrets


def test_pass_and_acct_are_masked_when_recorded() -> None:
    assert transcript.ftp_command("PASS hunter2-secret") == "PASS ********"
    assert transcript.ftp_command("pass x") == "PASS ********"
    assert transcript.ftp_command("ACCT billing-code") == "ACCT ********"
    assert transcript.ftp_command("USER alice") == "USER alice"
    assert transcript.MASK == secret.MASK


def test_the_endpoint_s_secrets_and_every_line_of_a_key_are_redacted() -> None:
    from pydantic import SecretStr

    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0\n-----END-----\n"
    endpoint = Endpoint("sftp", "dms.example", 22, "alice", password=SecretStr("pw-one-2345"),
                        private_key=SecretStr(key), key_passphrase=SecretStr("phrase-6789"))  # fmt: skip
    recorder = Recorder()
    with transcript.recording(recorder):
        transcript.connecting(endpoint)
        transcript.note("reply", "530 user alice pw-one-2345 refused")
        transcript.note("info", "key line b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0 echoed; phrase-6789")

    texts = _texts(recorder)

    assert texts[0] == "connecting to dms.example:22 (sftp) as alice"
    assert texts[1] == "530 user alice ******** refused"
    assert texts[2] == "key line ******** echoed; ********"


def test_the_redaction_the_exporter_adds_is_applied_to_every_entry() -> None:
    recorder = Recorder()
    recorder.add("reply", "a secret the process knows: s3cret-from-the-store")

    [entry] = recorder.entries(lambda text: text.replace("s3cret-from-the-store", "********"))

    assert entry["text"] == "a secret the process knows: ********"


# --- binding


def test_notes_go_to_the_recorder_of_this_thread_only_and_nowhere_when_paused() -> None:
    mine, theirs = Recorder(), Recorder()

    def other_thread() -> None:
        with transcript.recording(theirs):
            transcript.note("send", "NOOP from the other thread")

    transcript.note("send", "before any recording")  # nobody records: nothing happens
    with transcript.recording(mine):
        transcript.note("send", "STOR a")
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        with transcript.paused():
            transcript.note("send", "QUIT to another destination")
        transcript.note("send", "RNTO a")
    assert transcript.current() is None

    assert _texts(mine) == ["STOR a", "RNTO a"]
    assert _texts(theirs) == ["NOOP from the other thread"]


# --- what the exporter keeps


def _kept(ledger_path: Path) -> list[tuple[str, bool, list[str]]]:
    with open_ledger(ledger_path) as ledger:
        rows = []
        for attempt in ledger.history():
            for kept in ledger.transcripts(attempt["correlation_id"]):
                rows.append((kept["result"], kept["ok"], [e["text"] for e in kept["entries"]]))
        return rows


def test_a_failed_attempt_keeps_its_transcript_with_its_error_last(world: World) -> None:
    world.server.refuse("rename", "*", permanent=True)

    world.export([world.record()])

    [(result, ok, texts)] = _kept(world.ledger_path)
    assert (result, ok) == ("failed", False)
    assert texts[0] == "connecting to dms.example:21 (ftp) as acme"
    assert texts[-1].startswith("transfer: ") and "refused to rename" in texts[-1]
    assert "not-a-real-password" not in "".join(texts)


def test_of_the_delivered_attempts_the_last_few_per_destination_are_kept(world: World) -> None:
    folders = [world.record(n) for n in range(1, transcripts.KEEP_DELIVERED + 3)]

    world.export(folders)

    with open_ledger(world.ledger_path) as ledger:
        attempts = ledger.history()
    assert len(attempts) == transcripts.KEEP_DELIVERED + 2
    assert sum(a["transcript"] for a in attempts) == transcripts.KEEP_DELIVERED
    assert all(result == "delivered" for result, _, _ in _kept(world.ledger_path))


def test_a_transcript_the_ledger_cannot_write_is_logged_and_the_delivery_goes_on(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ftpexport.errors import StateError
    from ftpexport.ledger import SQLiteLedger

    def full_disk(self: Ledger, *args: object, **kwargs: object) -> None:
        raise StateError("ledger.sqlite3: cannot write the ledger: database or disk is full")

    monkeypatch.setattr(SQLiteLedger, "save_transcript", full_disk)

    summary = world.export([world.record()])

    assert [o.result for o in summary.outcomes] == ["delivered"]
    assert "the attempt's transcript was not kept" in caplog.text


# --- purge


def test_the_purge_drops_old_transcripts_at_most_once_in_its_interval(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    attempt = ledger.start_attempt(delivery.id, "c-1")
    ledger.fail(delivery.id, attempt, "530", final=True)
    ledger.save_transcript(attempt, delivery.id, "acme/dms", [{"ms": 0, "kind": "reply", "text": "530"}],
                           ok=False, keep_ok=5)  # fmt: skip

    assert transcripts.Purge(ledger)() == 0  # made now: younger than KEEP_DAYS
    purge = transcripts.Purge(ledger, days=-1)  # "older than tomorrow": every transcript
    assert purge() == 1
    ledger.save_transcript(attempt, delivery.id, "acme/dms", [], ok=False, keep_ok=5)
    assert purge() == 0  # not again within its interval
    assert ledger.attempts_with_transcripts([attempt]) == {attempt}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with open_ledger(tmp_path / "ledger.sqlite3") as opened:
        yield opened


def test_what_a_server_says_is_kept_as_text_its_control_characters_escaped() -> None:
    recorder = Recorder()
    recorder.add("reply", "220-Welcome \x1b[2J\x1b]0;owned\x07 to Müller's\n220 ready\u202e")

    [text] = _texts(recorder)

    assert text == "220-Welcome \\x1b[2J\\x1b]0;owned\\x07 to Müller's\n220 ready\\u202e"

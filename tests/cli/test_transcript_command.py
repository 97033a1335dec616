"""ftpexport transcript CORRELATION_ID (text and --json), its errors, and history's mark of the attempts
that keep a transcript. The transcripts of real sessions are in tests/integration/test_transcripts.py."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import invoke

from ftpexport.ledger import open_ledger

ENTRIES = [
    {"ms": 0, "kind": "info", "text": "connecting to 127.0.0.1:2121 (ftp) as alice"},
    {"ms": 3, "kind": "reply", "text": "220-Welcome\n220 FTP ready"},
    {"ms": 4, "kind": "send", "text": "PASS ********"},
    {"ms": 9, "kind": "reply", "text": "530 Login incorrect."},
    {"ms": 10, "kind": "error", "text": "login: login refused"},
]


def _ledger(path: Path) -> None:
    """veh-1: a failed attempt with a transcript, then a delivered one without; veh-2: one without."""
    with open_ledger(path) as ledger:
        first = ledger.open_delivery(record_id="veh-1", content_hash="h", client_id="acme", destination="acme/dms",
                                     record_path="/inbox/veh-1")  # fmt: skip
        failed = ledger.start_attempt(first.id, "corr-a")
        ledger.fail(first.id, failed, "login refused", final=False)
        ledger.save_transcript(failed, first.id, "acme/dms", ENTRIES, ok=False, keep_ok=5)
        done = ledger.start_attempt(first.id, "corr-b")
        ledger.succeed(first.id, done, ["dms/veh-1.zip"], 10)
        second = ledger.open_delivery(record_id="veh-2", content_hash="h", client_id="acme", destination="acme/dms",
                                      record_path="/inbox/veh-2")  # fmt: skip
        ledger.succeed(second.id, ledger.start_attempt(second.id, "corr-c"), ["dms/veh-2.zip"], 10)


def test_the_transcript_of_a_delivery_is_found_by_any_of_its_correlation_ids(tmp_path: Path) -> None:
    state = tmp_path / "ledger.sqlite3"
    _ledger(state)

    text = invoke("transcript", "corr-b", "--state", state)
    document = invoke("transcript", "corr-a", "--state", state, "--json")

    assert text.exit_code == 0 and document.exit_code == 0, text.output + document.output
    lines = text.stdout.splitlines()
    assert lines[0].startswith("attempt 1 of 1 with a transcript  acme/dms  correlation id corr-a")
    assert lines[1].endswith("failed: login refused")
    assert lines[2:] == [
        "       0 ms  * connecting to 127.0.0.1:2121 (ftp) as alice",
        "       3 ms  < 220-Welcome",
        "              220 FTP ready",
        "       4 ms  > PASS ********",
        "       9 ms  < 530 Login incorrect.",
        "      10 ms  ! login: login refused",
    ]
    [attempt] = json.loads(document.stdout)["attempts"]
    assert attempt["entries"] == ENTRIES
    assert (attempt["correlation_id"], attempt["result"], attempt["ok"]) == ("corr-a", "failed", False)


def test_an_unknown_correlation_id_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "ledger.sqlite3"
    _ledger(state)

    result = invoke("transcript", "no-such-id", "--state", state)

    assert result.exit_code == 2
    assert f"{state}: no delivery or attempt has the correlation id 'no-such-id'" in result.stderr
    assert "ftpexport history lists the attempts with their correlation ids" in result.stderr


def test_a_delivery_without_a_transcript_kept_says_which_are_kept(tmp_path: Path) -> None:
    state = tmp_path / "ledger.sqlite3"
    _ledger(state)

    result = invoke("transcript", "corr-c", "--state", state)

    assert result.exit_code == 1
    assert "the attempts of 'corr-c' have no transcript kept" in result.stderr
    assert "every failed attempt keeps one, and the last 5 delivered ones" in result.stderr
    assert "purged after 30 days" in result.stderr


def test_history_marks_the_attempts_that_have_a_transcript(tmp_path: Path) -> None:
    state = tmp_path / "ledger.sqlite3"
    _ledger(state)

    document = json.loads(invoke("history", "--state", state, "--json").stdout)
    text = invoke("history", "--state", state).stdout

    assert [(a["correlation_id"], a["transcript"]) for a in document["attempts"]] == [
        ("corr-a", True), ("corr-b", False), ("corr-c", False)
    ]  # fmt: skip
    rows = text.splitlines()
    assert "correlation id" in rows[0] and "transcript" in rows[0]
    assert [row.split()[7:9] for row in rows[2:5]] == [["corr-a", "yes"], ["corr-b", "-"], ["corr-c", "-"]]
    assert "1 with a transcript of what was said with the server: ftpexport transcript CORRELATION_ID" in text


def test_without_a_ledger_the_command_says_so(tmp_path: Path) -> None:
    result = invoke("transcript", "corr-a", "--state", tmp_path / "none.sqlite3")

    assert result.exit_code == 2
    assert "no ledger here yet" in result.stderr


def test_a_state_url_of_no_known_backend_is_refused_without_its_password() -> None:
    result = invoke("transcript", "corr-a", "--state", "mysql://exporter:pw-Secret-314@db.example:3306/ledger")

    assert result.exit_code == 2
    assert "--state mysql://exporter@db.example:3306/ledger: no ledger backend" in result.stderr
    assert "pw-Secret-314" not in result.output

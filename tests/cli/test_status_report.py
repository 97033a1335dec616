"""`ftpexport status` (per client and destination) and `ftpexport report` (what was sent to whom),
read from a ledger filled through the Ledger API, with its times set by the test."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_runner import invoke

from ftpexport.ledger import Ledger, open_ledger


def _ago(**delta: float) -> str:
    # from the moment of the call (each test writes its ledger): a "now" taken when the module was
    # imported is minutes old by the time a long suite reaches these tests (30m read as 31m05s)
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="milliseconds")


def _delivery(
    ledger: Ledger, record: str, client: str, destination: str, *, result: str, created: str, finished: str,
    error: str | None = None,
) -> int:  # fmt: skip
    delivery = ledger.open_delivery(
        record_id=record, content_hash="h", client_id=client, destination=destination, record_path=f"/in/{record}",
        vin=f"VIN{record.upper():>14}",
    )  # fmt: skip
    if result != "queued":
        attempt = ledger.start_attempt(delivery.id, f"cid-{record}-{destination}")
        if result == "delivered":
            ledger.succeed(delivery.id, attempt, [f"/{destination}/{record}.zip"], 1000 + len(record))
        else:
            ledger.fail(delivery.id, attempt, error or "boom", final=result == "failed")
    db = sqlite3.connect(ledger.path)
    db.execute(
        "UPDATE deliveries SET created_at = ?, updated_at = ?,"
        " delivered_at = CASE WHEN status = 'delivered' THEN ? END WHERE id = ?",
        (created, finished, finished, delivery.id),
    )
    db.commit()
    db.close()
    return delivery.id


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite3"
    with open_ledger(path) as ledger:
        _delivery(ledger, "r1", "acme", "acme/dms", result="delivered", created=_ago(days=3), finished=_ago(days=3))
        _delivery(ledger, "r2", "acme", "acme/dms", result="delivered", created=_ago(hours=2), finished=_ago(hours=1))
        _delivery(ledger, "r3", "acme", "acme/dms", result="failed", created=_ago(hours=5), finished=_ago(hours=4),
                  error="550 permission denied: /dms/r3.zip")  # fmt: skip
        _delivery(ledger, "r4", "acme", "acme/backup", result="pending", created=_ago(minutes=30),
                  finished=_ago(minutes=10), error="timed out after 30 s")  # fmt: skip
        _delivery(ledger, "r1", "bravo", "bravo/ftp", result="delivered", created=_ago(days=1), finished=_ago(days=1))
    return path


def test_status_shows_each_destination_its_last_success_oldest_undelivered_and_last_error(state: Path) -> None:
    result = invoke("status", "--state", state)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["client", "destination", "delivered", "pending", "failed", "last", "success",
                                "oldest", "undelivered"]  # fmt: skip
    rows = {line.split()[1]: line for line in lines[2:5]}
    assert re.match(r"acme +acme/backup +0 +1 +0 +- +30m", rows["acme/backup"]), rows
    assert re.match(r"acme +acme/dms +2 +0 +1 +\S+ \(1h\d\dm ago\) +5h00m", rows["acme/dms"]), rows
    assert re.match(r"bravo +bravo/ftp +1 +0 +0 +\S+ \(1d|bravo +bravo/ftp +1 +0 +0 +\S+ \(24h", rows["bravo/ftp"])
    assert re.search(r"  acme/dms  at \S+ \(4h\d\dm ago\): 550 permission denied: /dms/r3.zip", result.stdout)
    assert re.search(r"  acme/backup  at \S+ \(10m\d\ds ago\): timed out after 30 s", result.stdout)
    assert "  acme/dms  r3  (attempts: 1): 550 permission denied" in result.stdout


def test_status_filters_by_client_failed_and_since(state: Path) -> None:
    only_bravo = invoke("status", "--state", state, "--client", "bravo").stdout
    assert "bravo/ftp" in only_bravo and "acme" not in only_bravo

    failed = invoke("status", "--state", state, "--failed").stdout
    assert "acme/dms" in failed and "acme/backup" not in failed.split("last errors:")[0] and "bravo" not in failed

    recent = json.loads(invoke("status", "--state", state, "--since", "3h", "--json").stdout)
    # r2 (1 h) and r4 (10 min) changed in the last 3 hours; r3's failure (4 h) and bravo did not
    assert {(d["destination"], d["delivered"], d["pending"], d["failed"]) for d in recent["destinations"]} == {
        ("acme/dms", 1, 0, 0),
        ("acme/backup", 0, 1, 0),
    }


def test_status_json_has_ages_and_errors_per_destination(state: Path) -> None:
    document = json.loads(invoke("status", "--state", state, "--json").stdout)
    by_destination = {d["destination"]: d for d in document["destinations"]}
    dms = by_destination["acme/dms"]
    assert (dms["delivered"], dms["pending"], dms["failed"]) == (2, 0, 1)
    assert dms["last_error"] == "550 permission denied: /dms/r3.zip"
    assert 5 * 3600 - 60 < dms["oldest_undelivered_age_seconds"] < 5 * 3600 + 60
    assert datetime.fromisoformat(dms["last_success"]).utcoffset() == timedelta(0)  # ISO 8601 with offset
    assert by_destination["bravo/ftp"]["oldest_undelivered_age_seconds"] is None
    assert len(document["deliveries"]) == 5  # the newest deliveries, failed or not


def test_status_of_a_missing_ledger_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = invoke("status", "--state", tmp_path / "nope.sqlite3")
    assert result.exit_code == 2
    assert "no ledger here yet" in result.stderr


def test_report_lists_what_was_sent_to_whom_as_a_table_csv_or_json(state: Path) -> None:
    table = invoke("report", "--state", state, "--since", _ago(days=2))
    assert table.exit_code == 0, table.output
    assert "acme/dms" in table.stdout and "bravo/ftp" in table.stdout
    assert "r3" not in table.stdout and "r4" not in table.stdout  # not delivered
    assert "acme: 1 vehicle(s) to 1 destination(s)" in table.stdout
    assert "bravo: 1 vehicle(s) to 1 destination(s)" in table.stdout

    text = invoke("report", "--state", state, "--since", "7d", "--client", "acme", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["record_id"], r["destination"], r["remote_paths"]) for r in rows] == [
        ("r1", "acme/dms", "/acme/dms/r1.zip"),
        ("r2", "acme/dms", "/acme/dms/r2.zip"),
    ]
    assert rows[0]["vin"] == "VIN" + "R1".rjust(14) and rows[0]["correlation_id"] == "cid-r1-acme/dms"
    assert rows[0]["bytes"] == "1002"

    window = json.loads(
        invoke("report", "--state", state, "--since", _ago(days=4), "--until", _ago(days=2), "--format", "json").stdout
    )
    assert [(d["client_id"], d["record_id"]) for d in window["deliveries"]] == [("acme", "r1")]


def test_report_refuses_a_date_it_cannot_read(state: Path) -> None:
    result = invoke("report", "--state", state, "--since", "last tuesday")
    assert result.exit_code == 2
    assert "expected a date (2026-11-20)" in result.output


def test_an_error_kept_before_errors_were_text_is_shown_as_one_line_of_text(tmp_path: Path) -> None:
    # a ledger row of an older ftpexport: a server's two-line reply with escape sequences, kept as it
    # came, and a record id with one (ids are refused since)
    path = tmp_path / "ledger.sqlite3"
    raw = "552-Quota exceeded\r\n552 \x1b[2J\x1b[31mbye"
    with open_ledger(path) as ledger:
        _delivery(ledger, "r\x1b[5m1", "acme", "acme/dms", result="failed", created=_ago(hours=1),
                  finished=_ago(hours=1), error=raw)  # fmt: skip
        _delivery(ledger, "r\x1b[5m2", "acme", "acme/dms", result="delivered", created=_ago(hours=1),
                  finished=_ago(minutes=1))  # fmt: skip

    shown = "552-Quota exceeded 552 \\x1b[2J\\x1b[31mbye"
    for args in (("status",), ("history",), ("retry", "--all")):
        # terminal=True: as on a terminal, where click leaves escape sequences in what it prints
        out = invoke(*args, "--state", path, terminal=True).stdout
        assert "\x1b" not in out and "\r" not in out, (args, out)
        assert shown in out and "r\\x1b[5m1" in out, (args, out)
    report = invoke("report", "--state", path, "--since", _ago(days=1)[:10], terminal=True).stdout
    assert "\x1b" not in report and "r\\x1b[5m2" in report, report

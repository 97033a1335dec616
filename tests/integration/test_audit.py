"""The audit trail: every attempt is a log line with who, where, what, how much, the result and the time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runner import invoke
from faults import closed_port
from rulefiles import ftp_destination, rule_document, write_rules
from servers import RunningServer

from ftpexport.ledger import open_ledger

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
AUDIT_FIELDS = ("correlation_id", "client", "destination", "host", "bytes", "result", "duration_ms", "record_id")


def test_every_attempt_is_logged_with_the_audit_fields_and_kept_in_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer
) -> None:
    monkeypatch.setenv("AUDIT_FTP_PASSWORD", ftp_server.password)
    rules = tmp_path / "rules"
    dms = ftp_destination("dms", ftp_server, "dms", "AUDIT_FTP_PASSWORD")
    down = ftp_destination("down", ftp_server, "x", "AUDIT_FTP_PASSWORD", port=closed_port(), timeout=2)
    write_rules(rules, rule_document("bravo-cars", [dms, down]))
    inbox = tmp_path / "inbox"
    shutil.copytree(SAMPLES / "veh-000201", inbox / "veh-000201")
    log_file, state = tmp_path / "audit.log", tmp_path / "ledger.sqlite3"

    result = invoke(
        "--log-format",
        "json",
        "--log-file",
        log_file,
        "run",
        inbox,
        "--rules",
        rules,
        "--state",
        state,
        "--retries",
        "1",
        "--backoff",
        "0.01",
    )
    assert result.exit_code == 1, result.output  # the destination that is down failed

    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    delivered = [e for e in events if e["message"] == "delivered"]
    failed = [e for e in events if e["message"] == "delivery attempt failed"]
    assert len(delivered) == 1 and len(failed) == 2
    for event in delivered + failed:
        missing = [f for f in AUDIT_FIELDS if f not in event]
        assert not missing, (event["message"], missing)
        assert event["client"] == "bravo-cars" and event["host"] == "127.0.0.1"
    assert delivered[0]["result"] == "delivered" and delivered[0]["bytes"] > 0
    assert delivered[0]["remote_paths"] == ["dms/VF3MCYHZRKS000201.zip"]
    assert [e["result"] for e in failed] == ["retry", "failed"]
    assert all("connection refused" in e["error"] for e in failed)
    assert failed[0]["correlation_id"] == failed[1]["correlation_id"]  # one id per record delivery
    assert failed[0]["correlation_id"] != delivered[0]["correlation_id"]

    with open_ledger(state) as ledger:
        history = ledger.history(client_id="bravo-cars")
    assert sorted((h["destination"], h["result"]) for h in history) == [
        ("bravo-cars/dms", "delivered"), ("bravo-cars/down", "failed"), ("bravo-cars/down", "failed")
    ]  # fmt: skip
    assert {h["correlation_id"] for h in history} == {delivered[0]["correlation_id"], failed[0]["correlation_id"]}

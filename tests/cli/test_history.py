"""ftpexport history: the audit trail answers "what was sent to client X on day D"."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_runner import invoke

from ftpexport.ledger import open_ledger


def _ledger(path: Path) -> None:
    with open_ledger(path) as ledger:
        for record, client, destination in [("veh-1", "acme", "acme/dms"), ("veh-2", "acme", "acme/ftp"),
                                            ("veh-3", "bravo", "bravo/dms")]:  # fmt: skip
            delivery = ledger.open_delivery(
                record_id=record, content_hash="h", client_id=client, destination=destination,
                record_path=f"/inbox/{record}",
            )  # fmt: skip
            failed = ledger.start_attempt(delivery.id, f"c-{record}-1")
            ledger.fail(delivery.id, failed, "remote path x: timed out after 30 s", final=False)
            done = ledger.start_attempt(delivery.id, f"c-{record}-2")
            ledger.succeed(delivery.id, done, [f"photos/{record}.zip"], 1234)


def test_history_lists_every_attempt_of_a_client_on_a_day(tmp_path: Path) -> None:
    state = tmp_path / "ledger.sqlite3"
    _ledger(state)
    today = datetime.now(UTC).date()

    result = invoke("history", "--state", state, "--client", "acme", "--day", today, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["attempts"]
    assert [(r["record_id"], r["result"]) for r in rows] == [
        ("veh-1", "failed"), ("veh-1", "delivered"), ("veh-2", "failed"), ("veh-2", "delivered")
    ]  # fmt: skip
    delivered = rows[1]
    assert delivered["destination"] == "acme/dms" and delivered["remote_paths"] == ["photos/veh-1.zip"]
    assert delivered["bytes"] == 1234 and delivered["correlation_id"] == "c-veh-1-2"
    assert rows[0]["error"] == "remote path x: timed out after 30 s" and rows[0]["remote_paths"] == []

    text = invoke("history", "--state", state, "--client", "acme", "--day", today)
    assert text.exit_code == 0
    assert "photos/veh-2.zip" in text.output and "veh-3" not in text.output
    assert "4 attempts, 2 delivered, 2.4 KB sent" in text.output

    yesterday = str(today - timedelta(days=1))
    other = invoke("history", "--state", state, "--client", "acme", "--day", yesterday)
    assert other.exit_code == 0 and "no delivery attempt matches" in other.output


def test_history_without_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke("history", "--state", tmp_path / "none.sqlite3")
    assert result.exit_code == 2
    assert "no ledger here yet" in result.output

"""Refused records stay visible after the run: ``status``, ``status --json`` and ``history`` read them
from the ledger until the record is fixed (and delivered) or its folder is gone.

Real runs against a pyftpdlib server of the test: one good record, and one refused for each
reason a record can be refused: a vehicle.json that is not valid, a client without a rule file,
and a name that renders badly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import invoke
from records import make_record
from rulefiles import ftp_destination, rule_document, write_rules
from servers import RunningServer

pytestmark = pytest.mark.integration

PASSWORD_ENV = "REFUSED_FTP_PASSWORD"


def _status_json(state: Path, *options: str) -> dict[str, Any]:
    result = invoke("status", "--state", state, "--json", *options)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture
def setup(tmp_path: Path, ftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(inbox, rules, state): acme-motors and bravo-cars over FTP; 4 records, 3 of them refused."""
    monkeypatch.setenv(PASSWORD_ENV, ftp_server.password)
    inbox, rules = tmp_path / "inbox", tmp_path / "rules"
    write_rules(rules, rule_document("acme-motors", [ftp_destination("dms", ftp_server, "acme", PASSWORD_ENV)]))
    bravo = write_rules(rules, rule_document("bravo-cars", [ftp_destination("dms", ftp_server, "bravo", PASSWORD_ENV)]))
    document = yaml.safe_load(bravo.read_text())
    document["package"] = {"archive_name": "{{ stock_number }}.zip"}
    bravo.write_text(yaml.safe_dump(document))
    make_record(inbox, 1, "acme-motors")
    (make_record(inbox, 2, "acme-motors") / "vehicle.json").write_text('{"id": "veh-000002", "vin": ')
    make_record(inbox, 3, "zulu-auto")
    naming = make_record(inbox, 4, "bravo-cars")
    data = json.loads((naming / "vehicle.json").read_text())
    (naming / "vehicle.json").write_text(json.dumps({**data, "stock_number": "../B4"}))
    return inbox, rules, tmp_path / "state" / "ledger.sqlite3"


def test_refused_records_are_in_status_until_fixed_and_delivered_or_gone(
    setup: tuple[Path, Path, Path], ftp_server: RunningServer
) -> None:
    inbox, rules, state = setup
    first = invoke("run", inbox, "--rules", rules, "--state", state)
    assert first.exit_code == 1 and "3 refused records" in first.stdout, first.output

    refused = {row["record_path"]: row for row in _status_json(state)["refused_records"]}
    assert set(refused) == {str(inbox / f"veh-00000{n}") for n in (2, 3, 4)}
    record, rules_missing, naming = (refused[str(inbox / f"veh-00000{n}")] for n in (2, 3, 4))
    assert record == {**record, "kind": "record", "record_id": None, "client_id": None, "rule_file": None, "times": 1}
    assert record["reason"].startswith("vehicle.json is not valid JSON")
    assert rules_missing == {**rules_missing, "kind": "rules", "record_id": "veh-000003", "client_id": "zulu-auto",
                             "rule_file": None, "times": 1}  # fmt: skip
    assert rules_missing["reason"] == f"no rule file for client 'zulu-auto' in {rules} (add {rules}/zulu-auto.yaml)"
    assert naming == {**naming, "kind": "naming", "record_id": "veh-000004", "client_id": "bravo-cars",
                      "rule_file": str(rules / "bravo-cars.yaml")}  # fmt: skip
    assert "../B4" in naming["reason"]
    assert _status_json(state, "--client", "zulu-auto")["refused_records"] == [rules_missing]

    text = invoke("status", "--state", state)
    assert text.exit_code == 0, text.output
    assert "refused records (not sent until fixed; a changed record or rule file is read again):" in text.stdout
    assert f"  {inbox / 'veh-000003'}: no rule file for client 'zulu-auto'" in text.stdout
    assert "    rules, client zulu-auto, record veh-000003; refused once, last " in text.stdout
    assert f"    naming, client bravo-cars, record veh-000004, rule file {rules / 'bravo-cars.yaml'}; " in text.stdout
    history = invoke("history", "--state", state)
    assert "3 record folder(s) refused and never attempted: ftpexport status lists them" in history.stdout

    # refused again: counted
    assert invoke("run", inbox, "--rules", rules, "--state", state).exit_code == 1
    assert {row["times"] for row in _status_json(state)["refused_records"]} == {2}
    assert "refused 2 times since " in invoke("status", "--state", state).stdout

    # fixed, or gone: delivered, and no longer refused
    data = json.loads((inbox / "veh-000001" / "vehicle.json").read_text())
    fixed = {**data, "id": "veh-000002", "vin": "WVWZZZAUZLW000002"}
    (inbox / "veh-000002" / "vehicle.json").write_text(json.dumps(fixed))
    (rules / "zulu-auto.yaml").write_text((rules / "acme-motors.yaml").read_text().replace("acme-motors", "zulu-auto"))
    shutil.rmtree(inbox / "veh-000004")
    last = invoke("run", inbox, "--rules", rules, "--state", state)
    assert last.exit_code == 0, last.output
    assert "2 delivered, 1 unchanged" in last.stdout
    assert _status_json(state)["refused_records"] == []
    text = invoke("status", "--state", state).stdout
    assert "refused" not in text
    assert "refused" not in invoke("history", "--state", state).stdout
    assert (ftp_server.root / "acme" / "WVWZZZAUZLW000002.zip").is_file()


def test_status_shows_refused_records_when_nothing_was_ever_delivered(
    setup: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    inbox, rules, state = setup
    shutil.rmtree(inbox / "veh-000001")
    assert invoke("run", inbox, "--rules", rules, "--state", state).exit_code == 1

    text = invoke("status", "--state", state)
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("the ledger has no delivery for these filters\n\nrefused records")
    assert text.stdout.count(str(inbox)) == 3

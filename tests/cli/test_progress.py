"""What `ftpexport run` shows: the live display in a real pseudo-terminal, plain lines in a pipe,
one JSON document with --json, nothing but errors with --quiet, log lines with -v.

Each test runs the real command in a child process against a pyftpdlib server of the test, with
one healthy destination and one on a closed port (the failing destination an operator must see).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from faults import closed_port
from records import make_record
from rulefiles import ftp_destination, rule_document, write_rules
from servers import RunningServer

from ftpexport.display import human_bytes
from ftpexport.ledger import open_ledger

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "PROGRESS_FTP_PASSWORD"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RECORDS = 3


@pytest.fixture
def setup(tmp_path: Path, ftp_server: RunningServer) -> tuple[list[str], dict[str, str]]:
    """The command line of a run of 3 records to acme/ok (works) and acme/down (closed port), and its env."""
    inbox = tmp_path / "inbox"
    for n in range(1, RECORDS + 1):
        make_record(inbox, n, "acme", image_sizes={"99.jpg": 200_000})
    rules = tmp_path / "rules"
    write_rules(
        rules,
        rule_document(
            "acme",
            [
                ftp_destination("ok", ftp_server, "ok", PASSWORD_ENV),
                ftp_destination("down", ftp_server, "down", PASSWORD_ENV, port=closed_port()),
            ],
            upload={"retries": 0},
        ),
    )
    env = {**os.environ, PASSWORD_ENV: ftp_server.password, "PYTHONPATH": str(ROOT), "COLUMNS": "140"}
    env.pop("FTPEXPORT_JSON", None)
    command = ["-m", "ftpexport", "run", str(inbox), "--rules", str(rules), "--state", str(tmp_path / "l.db")]
    return command, env


def _pipe(command: list[str], env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command[:2], *options, *command[2:]],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_terminal_gets_the_live_display_failures_as_they_happen_and_the_summary(
    setup: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    command, env = setup
    child = pexpect.spawn(sys.executable, command, env=env, dimensions=(40, 140), timeout=120)
    child.expect(pexpect.EOF)
    raw = child.before.decode()
    child.close()
    assert child.exitstatus == 1  # a destination failed

    # redrawn in place: the cursor is hidden, lines are erased and the cursor goes up between frames
    assert "\x1b[?25l" in raw and "\x1b[?25h" in raw
    assert "\x1b[1A" in raw and "\x1b[2K" in raw
    screen = ANSI.sub("", raw).replace("\r", "")
    # the last frame: every record done, the bytes of this run, the state of each destination
    with open_ledger(tmp_path / "l.db") as ledger:
        sent = sum(d.bytes for d in ledger.deliveries(status="delivered"))
    assert f"Records {RECORDS}/{RECORDS}" in screen
    assert f"Sent {human_bytes(sent)} / {human_bytes(sent)} (100%)" in screen, screen
    assert re.search(r"acme/down +paused \S+ +0 +3 +0 B +connection refused", screen), screen
    assert re.search(r"acme/ok +done +3 +0 ", screen), screen
    # each failure printed once, above the display, as it happened
    for n in range(1, RECORDS + 1):
        assert screen.count(f"FAILED acme/down  veh-{n:06d}: connection refused") == 1
    # the summary table per client, with the first error
    assert re.search(rf"acme +3 +0 +0 +3 +0 +0 +{re.escape(human_bytes(sent))}", screen), screen
    assert "acme: first error: acme/down: connection refused" in screen


def test_a_pipe_gets_plain_lines_and_no_escape_codes(setup: tuple[list[str], dict[str, str]]) -> None:
    command, env = setup
    result = _pipe(command, env)

    assert result.returncode == 1
    assert "\x1b" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert sum(line.startswith("delivered acme/ok  veh-") for line in lines) == RECORDS
    assert sum(line.startswith("FAILED    acme/down  veh-") for line in lines) == RECORDS
    assert "client  delivered  unchanged  skipped  failed" in result.stdout
    assert "acme: first error: acme/down: connection refused" in result.stdout


def test_json_prints_one_document_and_no_progress(setup: tuple[list[str], dict[str, str]]) -> None:
    command, env = setup
    result = _pipe([*command, "--json"], env)

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["delivered"], report["failed"]) == (RECORDS, RECORDS)
    assert report["clients"]["acme"]["first_error"].startswith("acme/down: connection refused")
    assert all(d["correlation_id"] for d in report["deliveries"])
    assert result.stderr == ""


def test_quiet_prints_nothing_but_exits_1_on_failure(setup: tuple[list[str], dict[str, str]]) -> None:
    command, env = setup
    result = _pipe(command, env, "--quiet")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "delivered" not in result.stderr


def test_verbose_adds_log_lines_with_iso_times_and_correlation_ids(
    setup: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    command, env = setup
    result = _pipe(command, env, "-v", "--log-format", "json")

    assert result.returncode == 1
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    delivered = [e for e in events if e["message"] == "delivered"]
    assert len(delivered) == RECORDS
    for event in delivered:
        # ISO 8601 with the UTC offset
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", event["time"]), event["time"]
    with open_ledger(tmp_path / "l.db") as ledger:
        in_ledger = {d.correlation_id for d in ledger.deliveries(status="delivered")}
    assert {e["correlation_id"] for e in delivered} == in_ledger

"""The ``watch`` daemon as operators run it: a subprocess with JSON logs, stopped with SIGTERM.

A burst of records, deliveries the ledger resumes at startup, SIGTERM during an upload,
``ftpexport retry`` while the daemon runs, rule files changed (or broken) under its feet, and an
idle daemon that must leave delivered records alone.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cli_runner import invoke
from faults import FaultProxy, closed_port
from ftp_handlers import FtpSpy
from ledger_rows import attempts, deliveries, statuses
from polling import eventually
from processes import ExporterProcess, start_watch
from records import make_record
from remote_files import expected_files, part_files, remote_files
from rulefiles import ftp_destination, rule_document, sftp_destination, write_rules
from servers import RunningServer, pyftpdlib_server

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def _ftp_rule(server: RunningServer, folder: str, **extra: Any) -> dict[str, Any]:
    """acme-motors with one plain FTP destination ``dms`` to ``folder``; ``extra``: ``port`` and more keys of it."""
    return rule_document("acme-motors", [ftp_destination("dms", server, folder, "DAEMON_FTP_PASSWORD", **extra)])


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer) -> Path:
    """acme-motors -> plain FTP ``dms/`` on the ftp_server fixture."""
    monkeypatch.setenv("DAEMON_FTP_PASSWORD", ftp_server.password)
    folder = tmp_path / "rules"
    write_rules(folder, _ftp_rule(ftp_server, "dms"))
    return folder


def _stop(daemon: ExporterProcess) -> None:
    """SIGTERM: the daemon must exit 0, having logged "stopped" last."""
    daemon.terminate()
    assert daemon.wait() == 0, daemon.stderr
    events = daemon.events()
    assert events and events[-1]["message"] == "stopped", daemon.stderr[-2000:]


def _delivered(state: Path, record_id: str) -> bool:
    return any(r["record_id"] == record_id and r["status"] == "delivered" for r in deliveries(state))


# --- 5. a burst of records


def test_a_burst_of_300_records_is_delivered_once_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = FtpSpy()
    with pyftpdlib_server("ftp", **spy.attributes()) as server:
        monkeypatch.setenv("DAEMON_FTP_PASSWORD", server.password)
        rules = tmp_path / "rules"
        write_rules(rules, _ftp_rule(server, "dms", max_connections=4))
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        state = tmp_path / "ledger.sqlite3"
        ids = [f"veh-b{i:03d}" for i in range(300)]
        zips = {f"dms/WVWZZZAUZLW{1000 + n:06d}.zip" for n in range(300)}

        with start_watch(inbox, rules, state, "--jobs", "4") as daemon:
            for number, record_id in enumerate(ids):  # as fast as the platform can write them
                make_record(inbox, 1000 + number, name=record_id)
            eventually(lambda: statuses(state)["delivered"] == 300 or not daemon.alive(), "300 deliveries", timeout=60)
            _stop(daemon)

        rows = deliveries(state)
        assert sorted(r["record_id"] for r in rows) == ids
        assert {r["status"] for r in rows} == {"delivered"}
        assert remote_files(server.root) == zips
        # No record delivered twice: one attempt each in the ledger, one "delivered" event each in
        # the log, and each zip renamed into place exactly once on the server.
        renamed = spy.renamed(server.root)
        assert set(renamed) == zips
        twice = sorted((k, v) for k, v in renamed.items() if v != 1)
        assert twice == [], f"{len(twice)} zips were renamed into place more than once: {twice[:5]}"
        again = {r["record_id"]: r["attempts"] for r in rows if r["attempts"] != 1}
        assert again == {}, f"{len(again)} deliveries were attempted more than once"
        delivered = Counter(e["record_id"] for e in daemon.logged("delivered"))
        assert set(delivered) == set(ids)
        assert {k: v for k, v in delivered.items() if v != 1} == {}


# --- 6. pending deliveries resumed at startup


def test_watch_resumes_the_ledgers_pending_deliveries_at_startup(
    tmp_path: Path, rules: Path, ftp_server: RunningServer
) -> None:
    # A record outside any inbox the daemon will watch, left pending by a run against a dead server.
    elsewhere = tmp_path / "elsewhere"
    record = make_record(elsewhere, 6, name="veh-left")
    rule_file = rules / "acme-motors.yaml"
    good_rules = rule_file.read_text()
    write_rules(rules, _ftp_rule(ftp_server, "dms", port=closed_port()))
    state = tmp_path / "ledger.sqlite3"
    with ExporterProcess(
        "run", elsewhere, "--rules", rules, "--state", state, "--retries", "5", "--pause", "60", "--backoff", "0.05"
    ) as run:
        assert run.wait() == 1, run.stderr + run.stdout
    [row] = deliveries(state)
    assert row["status"] == "pending", row
    assert row["record_path"] == str(record)

    write_rules(rules, good_rules, "acme-motors")
    [(name, content)] = expected_files(record, rules).items()
    inbox = tmp_path / "inbox"  # empty: only the ledger knows about the record
    inbox.mkdir()
    with start_watch(inbox, rules, state) as daemon:
        eventually(lambda: _delivered(state, "veh-left") or not daemon.alive(), "the pending delivery")
        _stop(daemon)

    assert (ftp_server.root / "dms" / name).read_bytes() == content
    [row] = deliveries(state)
    assert row["status"] == "delivered"
    assert [e["record_id"] for e in daemon.logged("delivered")] == ["veh-left"]


# --- 7. SIGTERM during an upload


def test_sigterm_during_an_upload_exits_0_and_the_delivery_stays_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sftp_server: RunningServer
) -> None:
    monkeypatch.setenv("DAEMON_SFTP_PASSWORD", sftp_server.password)
    inbox = tmp_path / "inbox"
    record = make_record(inbox, 7, name="veh-term", image_sizes={"1.jpg": 4 * MB, "2.jpg": 4 * MB})
    state = tmp_path / "ledger.sqlite3"
    with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        proxy.throttle(MB)
        rules = tmp_path / "rules"
        dms = sftp_destination("dms", sftp_server, "dms", port=proxy.port, password_env="DAEMON_SFTP_PASSWORD")
        write_rules(rules, rule_document("acme-motors", [dms]))
        [(name, content)] = expected_files(record, rules).items()
        final = sftp_server.root / "dms" / name
        part = sftp_server.root / "dms" / f".{name}.part"

        with start_watch(inbox, rules, state, "--grace", "0.5") as daemon:
            eventually(
                lambda: not daemon.alive() or (part.exists() and part.stat().st_size >= 256 * 1024),
                "the upload to start",
            )
            assert daemon.alive(), daemon.stderr
            _stop(daemon)  # within DEADLINE: the grace is 0.5 s, the upload would need about 8 s

        assert not final.exists()
        [row] = deliveries(state)
        assert row["status"] == "pending"
        [attempt] = attempts(state, row["id"])
        assert attempt["result"] == "failed" and attempt["finished_at"] is not None
        assert "stopped" in attempt["error"]

        proxy.passthrough()
        with start_watch(inbox, rules, state) as again:
            eventually(lambda: _delivered(state, "veh-term") or not again.alive(), "the delivery after the restart")
            _stop(again)

    assert final.read_bytes() == content
    assert part_files(sftp_server.root) == set()
    [row] = deliveries(state)
    assert row["bytes"] == len(content)


# --- 8. ftpexport retry while the daemon runs


def test_retry_requeues_failed_deliveries_and_the_running_daemon_sends_them(
    tmp_path: Path, rules: Path, ftp_server: RunningServer
) -> None:
    # Two failed deliveries: one of a record in the watched inbox, one of a record elsewhere,
    # which the daemon can only learn about from the ledger.
    inbox = tmp_path / "inbox"
    elsewhere = tmp_path / "elsewhere"
    records = {
        "veh-retry-in": make_record(inbox, 81, name="veh-retry-in"),
        "veh-retry-out": make_record(elsewhere, 82, name="veh-retry-out"),
    }
    expected = {rid: expected_files(folder, rules) for rid, folder in records.items()}
    state = tmp_path / "ledger.sqlite3"
    wrong = {"DAEMON_FTP_PASSWORD": "not-the-password"}
    for folder in (inbox, elsewhere):
        with ExporterProcess("run", folder, "--rules", rules, "--state", state, env=wrong) as run:
            assert run.wait() == 1
    rows = deliveries(state)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("login refused" in r["last_error"] for r in rows)

    # The right password now; the daemon finds the inbox record parked as failed and leaves it alone.
    with start_watch(inbox, rules, state) as daemon:
        eventually(
            lambda: daemon.logged("record parked", record_id="veh-retry-in") or not daemon.alive(), "the parked record"
        )
        assert remote_files(ftp_server.root) == set()

        result = invoke("retry", "--all", "--state", state)
        assert result.exit_code == 0, result.output
        assert "2 failed deliveries requeued" in result.stdout

        eventually(
            lambda: all(_delivered(state, rid) for rid in records) or not daemon.alive(), "the requeued deliveries"
        )
        _stop(daemon)

    for files in expected.values():
        [(name, content)] = files.items()
        assert (ftp_server.root / "dms" / name).read_bytes() == content
    for row in deliveries(state):
        assert row["status"] == "delivered" and row["last_error"] is None
        assert [a["result"] for a in attempts(state, row["id"])] == ["failed", "delivered"]


# --- 9. rule files reloaded


def test_rule_changes_are_picked_up_and_a_broken_rule_file_keeps_the_last_good_rules(
    tmp_path: Path, rules: Path, ftp_server: RunningServer
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state = tmp_path / "ledger.sqlite3"
    rule_file = rules / "acme-motors.yaml"
    with start_watch(inbox, rules, state) as daemon:
        make_record(inbox, 91, name="veh-one")
        eventually(lambda: _delivered(state, "veh-one") or not daemon.alive(), "the first record")
        assert remote_files(ftp_server.root) == {"dms/WVWZZZAUZLW000091.zip"}

        write_rules(rules, _ftp_rule(ftp_server, "dms-v2/incoming"))
        eventually(lambda: daemon.logged("rules reloaded") or not daemon.alive(), "the rules to be reloaded")
        make_record(inbox, 92, name="veh-two")
        eventually(lambda: _delivered(state, "veh-two") or not daemon.alive(), "the second record")

        write_rules(rules, "client_id: acme-motors\ndestinations: [\n  - {name: dms, url: \n", "acme-motors")
        eventually(
            lambda: (
                any(e["level"] == "error" and str(rule_file) in e["message"] for e in daemon.events())
                or not daemon.alive()
            ),
            "an error naming the broken rule file",
        )
        make_record(inbox, 93, name="veh-three")
        eventually(lambda: _delivered(state, "veh-three") or not daemon.alive(), "the third record")
        _stop(daemon)

    assert remote_files(ftp_server.root) == {
        "dms/WVWZZZAUZLW000091.zip",  # not sent again to the new folder
        "dms-v2/incoming/WVWZZZAUZLW000092.zip",
        "dms-v2/incoming/WVWZZZAUZLW000093.zip",  # the last good rules
    }
    assert {r["status"] for r in deliveries(state)} == {"delivered"}


# --- an idle daemon


def test_an_idle_daemon_leaves_delivered_records_alone(tmp_path: Path, rules: Path) -> None:
    """Nothing changed and no rescan is due: a delivered record is not read or handled again."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state = tmp_path / "ledger.sqlite3"
    with start_watch(inbox, rules, state, rescan=3600) as daemon:
        # one record after the other, each waited for: the later ones give the daemon time to misbehave
        for number, record_id in enumerate(["veh-idle-1", "veh-idle-2", "veh-idle-3"]):
            make_record(inbox, 70 + number, name=record_id)
            eventually(lambda rid=record_id: _delivered(state, rid) or not daemon.alive(), f"{record_id}")
        _stop(daemon)

    handled_again = Counter(e["record_id"] for e in daemon.logged("record unchanged"))
    assert handled_again == {}, f"delivered records handled again without any change: {dict(handled_again)}"
    assert {r["attempts"] for r in deliveries(state)} == {1}

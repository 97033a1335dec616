"""Several hosts, one PostgreSQL (issue 14): three ``ftpexport watch`` workers share an inbox and a ledger.

Everything is counted at the servers (``cluster_harness``): one final rename per file over all the
workers (nothing twice), every file there with its bytes (nothing lost), and never more sessions to
a destination than its ``max_connections``, idle ones kept for reuse included. Then the failures: a
dead destination (a refused port), a worker killed with ``kill -9`` in the middle of an upload and
between a rename and its journal entry, and PostgreSQL restarted while the workers deliver.

Leases are short (``LEASE``) where a worker is killed, so that its deliveries are taken over within
seconds; elsewhere they are long (``LONG_LEASE``), so that a worker starved of CPU on a loaded machine
does not miss its heartbeat, fence itself and cut its uploads (a retry those tests would count).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import postgres
import pytest
from cluster_harness import Cluster
from faults import closed_port
from polling import eventually
from recording_servers import Block, RecordingFtpServer, recording_ftp_server, recording_sftp_server
from records import make_record
from remote_files import expected_files, part_files, remote_files
from rulefiles import ftp_destination, rule_document, sftp_destination, write_rules

pytestmark = pytest.mark.integration

#: seconds of a worker's leases (``--lease``) where one is killed: a heartbeat every 5/3 s
LEASE = 5.0
#: where none is
LONG_LEASE = 15.0
WORKERS = 3
PASSWORD_ENV = "CLUSTER_FTP_PASSWORD"
CLIENT = "acme-motors"


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def _cluster(tmp_path: Path, inbox: Path, state: str, *options: str, lease: float = LONG_LEASE) -> Cluster:
    return Cluster(inbox, tmp_path / "rules", state, lease=lease, options=options)


def _key(destination: str) -> str:
    """How the ledger names a destination of the client (``acme-motors/dms``)."""
    return f"{CLIENT}/{destination}"


def _ftp(name: str, server: RecordingFtpServer, user: str, **extra: Any) -> dict[str, Any]:
    """A destination ``name`` on ``server`` as ``user``, into its folder ``in``."""
    return ftp_destination(name, server.destination(user), "in", PASSWORD_ENV, **extra)


def _records(inbox: Path, numbers: range, size: int) -> list[Path]:
    return [make_record(inbox, n, CLIENT, name=f"veh-{n:04d}", image_sizes={"1.jpg": size}) for n in numbers]


def _names(records: list[Path], rules: Path) -> dict[str, bytes]:
    """``{name: bytes}`` of every file the records owe to each destination."""
    return {name: content for record in records for name, content in expected_files(record, rules).items()}


def _expected(records: list[Path], rules: Path, folders: list[str]) -> dict[str, bytes]:
    """``{folder/name: bytes}`` of every file the records owe to each of ``folders``."""
    return {f"{folder}/{name}": content for name, content in _names(records, rules).items() for folder in folders}


def _parts(expected: dict[str, bytes]) -> dict[str, int]:
    """Each file of ``expected`` stored once under its temporary name ``.NAME.part``."""
    return {str(Path(path).with_name(f".{Path(path).name}.part")): 1 for path in expected}


def _assert_ftp_delivered_once(server: RecordingFtpServer, expected: dict[str, bytes]) -> None:
    """Each file renamed into place once over all the workers, with its bytes; nothing else left."""
    renamed = server.renamed()
    assert {k: v for k, v in renamed.items() if v != 1} == {}, "renamed into place more than once"
    assert set(renamed) == set(expected)
    assert remote_files(server.root) - part_files(server.root) == set(expected)
    for path, content in expected.items():
        assert (server.root / path).read_bytes() == content, path


def _attempt_results(cluster: Cluster) -> dict[tuple[str, str], list[str | None]]:
    """``{(record_id, destination): [result of each attempt, oldest first]}`` from the ledger."""
    results: dict[tuple[str, str], list[str | None]] = {}
    for attempt in cluster.ledger.history():
        results.setdefault((attempt["record_id"], attempt["destination"]), []).append(attempt["result"])
    return results


def _errors(cluster: Cluster) -> list[str]:
    """The errors of the attempts that failed, for an assertion's message."""
    return [f"{a['record_id']} {a['destination']}: {a['error']}" for a in cluster.ledger.history() if a["error"]]


def _assert_others_delivered_once(attempts: dict[tuple[str, str], list[str | None]], errors: list[str]) -> None:
    """Every delivery delivered by one attempt, after at most one the kill interrupted (the killed
    worker may have had another upload on the wire)."""
    again = {k: v for k, v in attempts.items() if v not in (["delivered"], ["interrupted", "delivered"])}
    assert again == {}, f"attempted again after: {errors[:5]}"


# --- all deliveries once, every cap respected


def test_three_workers_deliver_each_file_once_and_never_exceed_a_destinations_connections(
    tmp_path: Path, inbox: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    caps = {"ftp-1": 1, "ftp-2": 2, "ftp-3": 3, "sftp": 2}
    # ~0.3 s per upload: enough overlap for the caps to matter
    with recording_ftp_server(["d1", "d2", "d3"], bytes_per_second=300_000) as ftp, recording_sftp_server() as sftp:
        monkeypatch.setenv(PASSWORD_ENV, ftp.password)
        rules = tmp_path / "rules"
        destinations = [
            *(_ftp(f"ftp-{n}", ftp, f"d{n}", max_connections=caps[f"ftp-{n}"]) for n in (1, 2, 3)),
            sftp_destination("sftp", sftp.server, "in", max_connections=caps["sftp"]),
        ]
        write_rules(rules, rule_document(CLIENT, destinations))
        early = _records(inbox, range(1, 9), 60_000)  # found by every worker's first scan at once
        # --jobs 2: no worker can hold every connection slot (idle connections keep theirs), so the
        # work is shared, and the 3 workers can still ask for 6 connections to a destination at once
        with _cluster(tmp_path, inbox, pg_url, "--jobs", "2") as cluster:
            cluster.start(WORKERS)
            late = _records(inbox, range(9, 17), 60_000)  # found by their watchers
            records = early + late
            cluster.wait_delivered(len(records) * len(caps), timeout=90)
            cluster.stop()
            statuses = cluster.statuses()
            attempts = _attempt_results(cluster)
            errors = _errors(cluster)
            shared = cluster.delivered_by()
            context = cluster.stderr()

        _assert_ftp_delivered_once(ftp, _expected(records, rules, ["d1/in", "d2/in", "d3/in"]))
        assert ftp.stored() == _parts(_expected(records, rules, ["d1/in", "d2/in", "d3/in"]))
        sftp_expected = _expected(records, rules, ["in"])
        assert sftp.renamed() == {path: 1 for path in sftp_expected}
        for path, content in sftp_expected.items():
            assert (sftp.server.root / path).read_bytes() == content

        # counted at the servers, over all the workers together, idle sessions included
        open_now, peak = ftp.sessions()
        assert {user: peak[user] <= caps[f"ftp-{user[1]}"] for user in peak} == {"d1": True, "d2": True, "d3": True}, (
            f"sessions at once per FTP user {peak}, caps {caps}"
        )
        sftp_open, sftp_peak = sftp.sessions()
        assert 0 < sftp_peak <= caps["sftp"], f"{sftp_peak} SFTP sessions at once, cap {caps['sftp']}"
        assert set(open_now.values()) == {0} and sftp_open == 0, "a session was left open after the workers stopped"

    assert statuses == {"delivered": len(records) * len(caps)}
    # nothing failed: waiting for a connection slot another worker holds is not a try
    assert {k: v for k, v in attempts.items() if v != ["delivered"]} == {}, f"attempted again after: {errors[:5]}"
    assert len(shared) >= 2, f"one worker did all the work: {shared}\n{context}"


# --- a dead destination


def test_a_dead_destination_holds_up_nobody_and_is_paused_for_every_worker(
    tmp_path: Path, inbox: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threshold, max_connections = 3, 2  # the breaker's default: paused after 3 failures in a row
    with recording_ftp_server(["live"]) as ftp:
        monkeypatch.setenv(PASSWORD_ENV, ftp.password)
        rules = tmp_path / "rules"
        dead = _ftp("dead", ftp, "live", port=closed_port(), max_connections=max_connections)
        live = _ftp("live", ftp, "live", max_connections=max_connections)
        write_rules(rules, rule_document(CLIENT, [dead, live]))
        records = _records(inbox, range(1, 13), 20_000)
        # --pause 60: no probe of the dead destination during the test
        with _cluster(tmp_path, inbox, pg_url, "--pause", "60") as cluster:
            cluster.start(WORKERS)
            eventually(
                lambda: cluster.statuses()["delivered"] >= len(records) or not cluster.alive(),
                "the live destination's deliveries",
            )
            paused = cluster.ledger.coordination.paused()
            dead_attempts = [a for a in cluster.ledger.history() if a["destination"] == _key("dead")]
            dead_rows = [d for d in cluster.ledger.deliveries() if d.destination == _key("dead")]
            cluster.stop()

        _assert_ftp_delivered_once(ftp, _expected(records, rules, ["live/in"]))
    assert len(dead_rows) == len(records) and {d.status for d in dead_rows} == {"pending"}
    assert _key("dead") in paused, f"the dead destination is not paused for all: {paused}"
    # one breaker for all the workers: the failures of any of them pause it for every one
    assert len(dead_attempts) <= threshold + max_connections, (
        f"{len(dead_attempts)} attempts at a dead destination before the shared pause held them"
    )


# --- kill -9


def _single_destination(tmp_path: Path, server: RecordingFtpServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    rules = tmp_path / "rules"
    write_rules(rules, rule_document(CLIENT, [_ftp("dms", server, "dms", max_connections=2)]))
    return rules


def _kill_the_worker_held(
    tmp_path: Path, inbox: Path, pg_url: str, ftp: RecordingFtpServer, held: Block, count: int
) -> tuple[dict[tuple[str, str], list[str | None]], list[str]]:
    """Three workers on the inbox; ``kill -9`` of the one whose connection the server holds, once it
    holds it; the others deliver all ``count`` deliveries. The attempts' results and errors after."""
    with _cluster(tmp_path, inbox, pg_url, lease=LEASE) as cluster:
        cluster.start(WORKERS)
        held.wait()
        cluster.kill(cluster.owner(held.port, ftp.port))
        cluster.wait_delivered(count)
        # the killed worker's attempt is closed by a later look at the ledger (housekeeping)
        eventually(lambda: all(a["result"] for a in cluster.ledger.history()), "no attempt left running")
        assert len(cluster.alive()) == WORKERS - 1
        cluster.stop()
        return _attempt_results(cluster), _errors(cluster)


def test_kill_9_of_a_worker_mid_upload_another_takes_the_delivery_over_and_sends_it_once(
    tmp_path: Path, inbox: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with recording_ftp_server(["dms"], bytes_per_second=500_000) as ftp:
        rules = _single_destination(tmp_path, ftp, monkeypatch)
        records = _records(inbox, range(1, 7), 200_000)
        expected = _expected(records, rules, ["dms/in"])
        victim = Path(sorted(expected)[0]).name
        held = ftp.block_store(victim)  # its upload stops after the first bytes
        attempts, errors = _kill_the_worker_held(tmp_path, inbox, pg_url, ftp, held, len(records))

        _assert_ftp_delivered_once(ftp, expected)
        part = f"dms/in/.{victim}.part"
        assert ftp.stored()[part] == 1, "the upload cut by the kill was not sent again in full"
        assert "in/" + Path(part).name in [e.path for e in ftp.events("cut")]  # with the killed worker's others
    victim_record = next(r.name for r in records if victim in expected_files(r, rules))
    # the killed worker's attempt closed as interrupted, the one that took over delivered
    assert attempts.pop((victim_record, _key("dms"))) == ["interrupted", "delivered"]
    _assert_others_delivered_once(attempts, errors)


def test_kill_9_of_a_worker_between_rename_and_commit_the_file_is_not_sent_again(
    tmp_path: Path, inbox: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with recording_ftp_server(["dms"]) as ftp:
        rules = _single_destination(tmp_path, ftp, monkeypatch)
        records = _records(inbox, range(1, 7), 20_000)
        expected = _expected(records, rules, ["dms/in"])
        victim = Path(sorted(expected)[2]).name
        held = ftp.block_rename(victim)  # renamed on the server, "250" never sent
        attempts, errors = _kill_the_worker_held(tmp_path, inbox, pg_url, ftp, held, len(records))

        _assert_ftp_delivered_once(ftp, expected)
        part = f"dms/in/.{victim}.part"
        assert ftp.stored()[part] == 1, "the file renamed before the kill was uploaded again"
    victim_record = next(r.name for r in records if victim in expected_files(r, rules))
    # the killed worker's attempt closed as interrupted, the one that took over delivered
    assert attempts.pop((victim_record, _key("dms"))) == ["interrupted", "delivered"]
    _assert_others_delivered_once(attempts, errors)


# --- PostgreSQL restarted


@pytest.fixture
def own_postgresql(monkeypatch: pytest.MonkeyPatch) -> Iterator[postgres.PostgresServer]:
    """A PostgreSQL of this test's own: restarting the session's one would cut other tests' connections."""
    if not postgres.available():
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    with postgres.postgresql_server() as server:
        monkeypatch.setenv("PGPASSWORD", server.password)
        yield server


def test_postgresql_restarted_mid_run_loses_nothing_renames_nothing_meanwhile_and_nothing_twice(
    tmp_path: Path, inbox: Path, own_postgresql: postgres.PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with recording_ftp_server(["d1", "d2"], bytes_per_second=300_000) as ftp:
        monkeypatch.setenv(PASSWORD_ENV, ftp.password)
        rules = tmp_path / "rules"
        write_rules(rules, rule_document(CLIENT, [_ftp(f"ftp-{n}", ftp, f"d{n}") for n in (1, 2)]))
        records = _records(inbox, range(1, 13), 60_000)
        expected = _expected(records, rules, ["d1/in", "d2/in"])
        # an upload on the wire when the database goes, held there so that it ends while it is away
        held = ftp.block_store(Path(sorted(expected)[5]).name)
        # a long lease: the held upload must end before its worker, without a heartbeat, cuts it
        with _cluster(tmp_path, inbox, own_postgresql.new_database()) as cluster:
            cluster.start(WORKERS)
            held.wait()
            holder = cluster.owner(held.port, ftp.port)
            own_postgresql.stop()
            held.release()
            part = f"{held.user}/{held.path}"
            final = str(Path(part).with_name(Path(part).name.removeprefix(".").removesuffix(".part")))
            eventually(lambda: ftp.stored()[part] or ftp.closed(held.port), "the held upload to end")
            assert ftp.stored()[part] == 1, "the held upload was cut before it ended: the scenario did not happen"
            # Its journal entry, written before the rename, cannot be: the worker waits for the database
            # or gives the attempt up, and never renames meanwhile. The database stays away until the
            # worker shows it met the outage (a warning) or gave up the connection.
            seen = len(holder.events())
            eventually(
                lambda: (
                    ftp.renamed()[final]
                    or ftp.closed(held.port)
                    or any(e.get("level") in ("warning", "error") for e in holder.events()[seen:])
                ),
                "the worker holding the upload to meet the stopped database",
            )
            renamed_while_away = ftp.renamed()[final]
            own_postgresql.start()
            cluster.wait_delivered(len(expected), timeout=60)
            survivors = len(cluster.alive())
            cluster.stop()
            statuses = cluster.statuses()

        assert renamed_while_away == 0, f"{final} renamed while PostgreSQL was stopped: nothing journalled it"
        # the upload that could not be journalled renamed once the database was back, or sent again
        assert ftp.stored()[part] in (1, 2)
        _assert_ftp_delivered_once(ftp, expected)
    assert survivors == WORKERS, "a worker died of the restart"
    assert statuses == {"delivered": len(expected)}

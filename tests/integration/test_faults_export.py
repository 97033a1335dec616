"""Reliability of the export pipeline against misbehaving servers and networks (issue "Reliability").

Transient failures are retried with backoff up to a limit, then parked as failed until
``ftpexport retry``; permanent ones are not retried; a destination that keeps failing is paused and
its deliveries deferred, so one dead or slow destination never holds up the others; connections are
pooled and a dropped one is replaced. Every test checks the server's disk and the ledger.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import invoke
from disks import small_tmpfs
from faults import FaultProxy, closed_port
from ftp_handlers import ServerEvents, counting_handler
from records import make_record, vin
from remote_files import expected_files, files_under, part_files
from rulefiles import ftp_destination, rule_document, sftp_destination, write_rules
from servers import RunningServer, pyftpdlib_server

from ftpexport.events import Outcome, Summary
from ftpexport.ledger import Delivery, open_ledger
from ftpexport.pipeline import Exporter, Options
from ftpexport.rules import load_rules

pytestmark = pytest.mark.integration

CLIENT = "acme"
PASSWORD_ENV = "FAULTS_FTP_PASSWORD"
#: a tiny first retry delay: the tests check how often, not how long
BACKOFF = 0.01
#: the ledger's last_error of a delivery a batch run left pending because its destination is paused
PAUSED = re.compile(r"not tried\b[^:]*: the destination is paused")


# --- helpers


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    return tmp_path / "rules"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite3"


def export(
    rules_dir: Path,
    state: Path,
    folders: list[Path],
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
    **options: Any,
) -> Summary:
    """One batch export with a fresh Exporter (like ``ftpexport run``), closed afterwards."""
    ruleset = load_rules(rules_dir)
    assert not ruleset.errors, ruleset.errors
    settings = {"backoff": BACKOFF, "pause": 30.0, "spool_dir": state.parent / "spool", **options}
    with (
        open_ledger(state) as ledger,
        Exporter(ruleset, ledger, Options(**settings), on_outcome=on_outcome) as exporter,
    ):
        return exporter.export(folders)


def deliveries(state: Path) -> dict[tuple[str, str], tuple[Delivery, list[dict[str, Any]]]]:
    """``{(record_id, destination): (ledger row, its attempts)}``."""
    with open_ledger(state) as ledger:
        return {(d.record_id, d.destination): (d, ledger.attempts(d.id)) for d in ledger.deliveries()}


def the_delivery(state: Path) -> tuple[Delivery, list[dict[str, Any]]]:
    """The only delivery of the ledger and its attempts."""
    rows = deliveries(state)
    assert len(rows) == 1, rows
    return next(iter(rows.values()))


def archive(n: int) -> str:
    return f"{vin(n)}.zip"


def expected_archives(rules_dir: Path, folders: list[Path]) -> dict[str, bytes]:
    """``{archive name: bytes}`` the pipeline builds for each record (the zip is deterministic)."""
    ruleset = load_rules(rules_dir)
    archives: dict[str, bytes] = {}
    for folder in folders:
        archives.update(expected_files(folder, ruleset))
    return archives


def assert_names_remote_file(error: str | None, folder: str, name: str) -> None:
    """The error names the remote folder and the file (the temporary ``.NAME.part`` or the final name)."""
    assert error is not None
    assert re.search(rf"{re.escape(folder)}/\.?{re.escape(name)}", error), error


# --- retries, limits, parking, requeue


def test_451_twice_then_delivered_on_the_third_attempt(
    inbox: Path, rules_dir: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ServerEvents()
    handler = counting_handler(events, stor_reply=lambda n: "451 Local error, try again." if n <= 2 else None)
    with pyftpdlib_server("ftp", **handler) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        write_rules(rules_dir, rule_document(CLIENT, [ftp_destination("dms", server, "photos", PASSWORD_ENV)]))
        folder = make_record(inbox, 1, CLIENT)

        summary = export(rules_dir, state, [folder], retries=3)

        [outcome] = summary.outcomes
        assert (outcome.result, outcome.attempts, outcome.error) == ("delivered", 3, None)
        assert outcome.remote_paths == (f"photos/{archive(1)}",)
        expected = expected_files(folder, load_rules(rules_dir))[archive(1)]
        assert (server.root / "photos" / archive(1)).read_bytes() == expected
        assert part_files(server.root) == set()
        assert events["STOR"] == 3

    row, attempts = the_delivery(state)
    assert (row.status, row.attempts, row.last_error, row.bytes) == ("delivered", 3, None, len(expected))
    assert [a["result"] for a in attempts] == ["failed", "failed", "delivered"]
    for failed in attempts[:2]:
        assert "451" in failed["error"]
        assert_names_remote_file(failed["error"], "photos", archive(1))


def test_retries_exhausted_parks_the_delivery_until_ftpexport_retry(
    inbox: Path, rules_dir: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ServerEvents()
    failing = threading.Event()
    failing.set()
    handler = counting_handler(events, stor_reply=lambda n: "451 Try again later." if failing.is_set() else None)
    with pyftpdlib_server("ftp", **handler) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        write_rules(rules_dir, rule_document(CLIENT, [ftp_destination("dms", server, "photos", PASSWORD_ENV)]))
        make_record(inbox, 1, CLIENT)
        run = ("run", inbox, "--rules", rules_dir, "--state", state, "--json", "--retries", "1", "--backoff", "0.01")

        # 1. retries=1: two attempts, then failed with the last error
        first = invoke(*run)
        assert first.exit_code == 1, first.output
        [outcome] = json.loads(first.stdout)["deliveries"]
        assert (outcome["result"], outcome["attempts"], outcome["destination"]) == ("failed", 2, f"{CLIENT}/dms")
        assert events["STOR"] == 2
        row, attempts = the_delivery(state)
        assert (row.status, row.attempts, row.destination) == ("failed", 2, f"{CLIENT}/dms")
        assert "451" in row.last_error
        assert_names_remote_file(row.last_error, "photos", archive(1))
        assert [a["result"] for a in attempts] == ["failed", "failed"]
        assert files_under(server.root) == {}

        # 2. parked: the next run reports it and does not touch it
        second = invoke(*run)
        assert second.exit_code == 1, second.output
        [outcome] = json.loads(second.stdout)["deliveries"]
        assert (outcome["result"], outcome["attempts"]) == ("parked", 2)
        assert "451" in outcome["error"]
        assert events["STOR"] == 2, "a parked delivery was tried again"
        row, attempts = the_delivery(state)
        assert (row.status, row.attempts, len(attempts)) == ("failed", 2, 2)

        # 3. ftpexport retry --client: pending again, with a fresh attempt budget
        retried = invoke("retry", "--client", CLIENT, "--state", state)
        assert retried.exit_code == 0, retried.output
        assert f"{CLIENT}/dms" in retried.stdout and "veh-000001" in retried.stdout
        assert "1 failed deliveries requeued" in retried.stdout
        row, attempts = the_delivery(state)
        assert (row.status, row.attempts, len(attempts)) == ("pending", 0, 2)

        # 4. the server is healthy again: the next run delivers it
        failing.clear()
        third = invoke(*run)
        assert third.exit_code == 0, third.output
        [outcome] = json.loads(third.stdout)["deliveries"]
        assert (outcome["result"], outcome["attempts"]) == ("delivered", 1)
        assert events["STOR"] == 3
        assert set(files_under(server.root)) == {f"photos/{archive(1)}"}
        row, attempts = the_delivery(state)
        assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
        assert row.bytes == (server.root / "photos" / archive(1)).stat().st_size
        assert [a["result"] for a in attempts] == ["failed", "failed", "delivered"]  # the history stays


def test_rule_file_retries_override_the_command_line(
    inbox: Path, rules_dir: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ServerEvents()
    handler = counting_handler(events, stor_reply=lambda n: "451 Try again later.")
    with pyftpdlib_server("ftp", **handler) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        write_rules(
            rules_dir,
            rule_document(CLIENT, [ftp_destination("dms", server, "photos", PASSWORD_ENV)], upload={"retries": 0}),
        )
        make_record(inbox, 1, CLIENT)
        result = invoke(
            "run", inbox, "--rules", rules_dir, "--state", state, "--json", "--retries", "5", "--backoff", "0.01"
        )
        assert result.exit_code == 1, result.output
        [outcome] = json.loads(result.stdout)["deliveries"]
        assert (outcome["result"], outcome["attempts"]) == ("failed", 1)
        assert events["STOR"] == 1
        assert files_under(server.root) == {}
    row, attempts = the_delivery(state)
    assert (row.status, row.attempts, len(attempts)) == ("failed", 1, 1)
    assert "451" in row.last_error


# --- permanent and storage errors of FTP servers


def test_permission_denied_550_is_not_retried(
    tmp_path: Path, inbox: Path, rules_dir: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyftpdlib.authorizers import DummyAuthorizer

    home = tmp_path / "read-only-home"
    (home / "photos").mkdir(parents=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user("reader", "reader-password", str(home), perm="elr")  # list and read, no write
    with pyftpdlib_server("ftp", authorizer=authorizer) as server:
        monkeypatch.setenv(PASSWORD_ENV, "reader-password")
        write_rules(
            rules_dir,
            rule_document(CLIENT, [ftp_destination("readonly", server, "photos", PASSWORD_ENV, username="reader")]),
        )
        folder = make_record(inbox, 1, CLIENT)

        summary = export(rules_dir, state, [folder], retries=3)

        [outcome] = summary.outcomes
        assert (outcome.result, outcome.attempts, outcome.destination) == ("failed", 1, f"{CLIENT}/readonly")
        assert files_under(home) == {}
    row, attempts = the_delivery(state)
    assert (row.status, row.attempts, row.destination) == ("failed", 1, f"{CLIENT}/readonly")
    assert row.last_error == outcome.error
    assert "550" in row.last_error and "permission denied" in row.last_error
    assert_names_remote_file(row.last_error, "photos", archive(1))
    assert len(attempts) == 1


def test_552_out_of_space_is_retried_up_to_the_limit(
    inbox: Path, rules_dir: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ServerEvents()
    handler = counting_handler(events, stor_reply=lambda n: "552 Quota exceeded.")
    with pyftpdlib_server("ftp", **handler) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        write_rules(rules_dir, rule_document(CLIENT, [ftp_destination("dms", server, "photos", PASSWORD_ENV)]))
        folder = make_record(inbox, 1, CLIENT)

        summary = export(rules_dir, state, [folder], retries=2)

        [outcome] = summary.outcomes
        assert (outcome.result, outcome.attempts) == ("failed", 3)
        assert events["STOR"] == 3
        assert files_under(server.root) == {}  # nothing under the final name, nor a temporary file
    row, attempts = the_delivery(state)
    assert (row.status, row.attempts) == ("failed", 3)
    assert "out of space" in row.last_error and "552" in row.last_error
    assert_names_remote_file(row.last_error, "photos", archive(1))
    assert [a["result"] for a in attempts] == ["failed"] * 3
    assert all("out of space" in a["error"] for a in attempts)


def test_rename_refused_553_names_the_final_path(
    inbox: Path, rules_dir: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ServerEvents()
    handler = counting_handler(events, rnto_reply="553 Rename refused.")
    with pyftpdlib_server("ftp", **handler) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        write_rules(rules_dir, rule_document(CLIENT, [ftp_destination("dms", server, "photos", PASSWORD_ENV)]))
        folder = make_record(inbox, 1, CLIENT)

        summary = export(rules_dir, state, [folder], retries=3)

        [outcome] = summary.outcomes
        assert (outcome.result, outcome.attempts) == ("failed", 1)
        assert events["RNTO"] == 1
        assert not (server.root / "photos" / archive(1)).exists()
        assert part_files(server.root) == set()  # a refused rename leaves no hidden file behind
    row, attempts = the_delivery(state)
    assert (row.status, row.attempts, len(attempts)) == ("failed", 1, 1)
    with open_ledger(state) as ledger:
        assert ledger.file_states(row.id) == {}  # the journal does not claim the rename may have happened
    assert f"remote path photos/{archive(1)}:" in row.last_error
    assert "553 Rename refused" in row.last_error


def test_folder_that_cannot_be_created_is_named(
    inbox: Path, rules_dir: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ServerEvents()
    handler = counting_handler(events, mkd_reply="550 Cannot create the folder.")
    with pyftpdlib_server("ftp", **handler) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        server.make_dir("photos")
        write_rules(
            rules_dir,
            rule_document(
                CLIENT, [ftp_destination("dms", server, "photos", PASSWORD_ENV, remote_dir="{{ stock_number }}")]
            ),
        )
        folder = make_record(inbox, 1, CLIENT)  # stock_number A1240

        summary = export(rules_dir, state, [folder], retries=3)

        [outcome] = summary.outcomes
        assert (outcome.result, outcome.attempts) == ("failed", 1)
        assert files_under(server.root) == {}
        assert events["STOR"] == 0
    row, attempts = the_delivery(state)
    assert (row.status, row.attempts, len(attempts)) == ("failed", 1, 1)
    assert "remote path photos/A1240:" in row.last_error
    assert "550 Cannot create the folder" in row.last_error


# --- SFTP: disk full, connection cut mid-transfer


def test_sftp_disk_full_is_retried_then_delivered_after_requeue(
    inbox: Path, rules_dir: Path, state: Path, sftp_server: RunningServer
) -> None:
    write_rules(rules_dir, rule_document(CLIENT, [sftp_destination("dms", sftp_server, "full")]))
    folder = make_record(inbox, 1, CLIENT, image_sizes={"99.jpg": 1_300_000})
    expected = expected_files(folder, load_rules(rules_dir))[archive(1)]
    assert len(expected) > 1024 * 1024

    with small_tmpfs(sftp_server, "full", "1m") as umount:
        summary = export(rules_dir, state, [folder], retries=1)

        [outcome] = summary.outcomes
        assert (outcome.result, outcome.attempts) == ("failed", 2)
        on_disk = files_under(sftp_server.root / "full")
        assert archive(1) not in on_disk
        assert all(size < len(expected) for size in on_disk.values()), on_disk  # at most a partial .part
        row, attempts = the_delivery(state)
        assert (row.status, row.attempts) == ("failed", 2)
        assert "could not write the file" in row.last_error and "disk is full" in row.last_error
        assert_names_remote_file(row.last_error, sftp_server.remote_path("full"), archive(1))
        assert [a["result"] for a in attempts] == ["failed", "failed"]
        assert all("could not write the file" in a["error"] for a in attempts)

        umount()  # room again: the folder is back on the big disk

    with open_ledger(state) as ledger:
        assert [d.record_id for d in ledger.requeue(destination=f"{CLIENT}/dms")] == ["veh-000001"]
    row, _ = the_delivery(state)
    assert (row.status, row.attempts) == ("pending", 0)

    summary = export(rules_dir, state, [folder], retries=1)
    [outcome] = summary.outcomes
    assert (outcome.result, outcome.attempts) == ("delivered", 1)
    assert (sftp_server.root / "full" / archive(1)).read_bytes() == expected
    assert part_files(sftp_server.root) == set()
    row, attempts = the_delivery(state)
    assert (row.status, row.attempts, row.bytes) == ("delivered", 1, len(expected))
    assert [a["result"] for a in attempts] == ["failed", "failed", "delivered"]


@contextlib.contextmanager
def after_first_connection(proxy: FaultProxy, action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` in a thread as soon as ``proxy`` accepted its first connection (polled, with a deadline)."""
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            if proxy.connections >= 1:
                action()
                return
            done.wait(0.005)

    thread = threading.Thread(target=watch, name="test-switch-proxy-mode", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_sftp_cut_mid_transfer_is_delivered_complete_on_a_later_attempt(
    inbox: Path, rules_dir: Path, state: Path, sftp_server: RunningServer
) -> None:
    folder = make_record(inbox, 1, CLIENT, image_sizes={"99.jpg": 600_000})
    with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        write_rules(rules_dir, rule_document(CLIENT, [sftp_destination("dms", sftp_server, "cut", port=proxy.port)]))
        expected = expected_files(folder, load_rules(rules_dir))[archive(1)]
        proxy.cut_after(200_000, "up")
        with after_first_connection(proxy, proxy.passthrough):
            summary = export(rules_dir, state, [folder], retries=3)
        assert proxy.connections == 2
        assert proxy.bytes_up > 200_000 + len(expected)  # the cut came mid-transfer, then all of it went

    [outcome] = summary.outcomes
    assert (outcome.result, outcome.attempts) == ("delivered", 2)
    final = sftp_server.root / "cut" / archive(1)
    assert final.read_bytes() == expected
    assert part_files(sftp_server.root) == set()
    row, attempts = the_delivery(state)
    assert row.status == "delivered" and row.attempts == outcome.attempts
    assert row.remote_paths == (f"{sftp_server.remote_path('cut')}/{archive(1)}",)
    assert row.bytes == len(expected) == final.stat().st_size
    assert [a["result"] for a in attempts] == ["failed", "delivered"]
    # the first attempt was cut during the upload of the temporary file, which the retry replaced
    assert_names_remote_file(attempts[0]["error"], sftp_server.remote_path("cut"), archive(1))


# --- isolation: dead and slow destinations, breaker


def test_dead_destinations_do_not_hold_up_twenty_healthy_ones(
    inbox: Path, rules_dir: Path, state: Path, ftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, ftp_server.password)
    healthy = [f"h{i:02d}" for i in range(20)]
    folders = [make_record(inbox, n, CLIENT) for n in range(1, 11)]
    options = Options()
    with FaultProxy(ftp_server.host, ftp_server.port) as blackhole:
        blackhole.blackhole()
        destinations = [ftp_destination(name, ftp_server, name, PASSWORD_ENV) for name in healthy]
        destinations += [
            ftp_destination("blackhole", ftp_server, "bh", PASSWORD_ENV, port=blackhole.port, timeout=1),
            ftp_destination("closed", ftp_server, "closed", PASSWORD_ENV, port=closed_port(), timeout=1),
        ]
        write_rules(rules_dir, rule_document(CLIENT, destinations))
        expected = expected_archives(rules_dir, folders)

        started = time.monotonic()
        summary = export(rules_dir, state, folders, jobs=8, retries=3, pause=30.0)
        elapsed = time.monotonic() - started
        print(f"\n220 deliveries (20 to dead destinations) exported in {elapsed:.1f} s")
        blackhole_connections = blackhole.connections

    by_destination: dict[str, list[Outcome]] = {}
    for outcome in summary.outcomes:
        by_destination.setdefault(outcome.destination.split("/", 1)[1], []).append(outcome)
    assert len(summary.outcomes) == 220
    for name in healthy:
        assert [o.result for o in by_destination[name]] == ["delivered"] * 10, name
        for n in range(1, 11):
            assert (ftp_server.root / name / archive(n)).read_bytes() == expected[archive(n)], (name, n)
    assert part_files(ftp_server.root) == set()

    rows = deliveries(state)
    for name in ("blackhole", "closed"):
        assert sorted(o.result for o in by_destination[name]) == ["deferred"] * 10, name
        for n in range(1, 11):
            row, _ = rows[(f"veh-{n:06d}", f"{CLIENT}/{name}")]
            assert row.status == "pending", (name, n, row)
            assert PAUSED.search(row.last_error), row.last_error
            assert row.attempts <= options.breaker_threshold
    assert not (ftp_server.root / "bh").exists() and not (ftp_server.root / "closed").exists()
    assert sum(row.status == "delivered" for row, _ in rows.values()) == 200
    # The black hole was tried until the breaker opened, not once per record: the run's length is
    # bounded by a few timeouts, not by the records queued behind it.
    assert 1 <= blackhole_connections <= options.breaker_threshold + 2  # + max_connections (default 2)


def test_a_slow_destination_does_not_slow_the_others(
    inbox: Path,
    rules_dir: Path,
    state: Path,
    ftp_server: RunningServer,
    sftp_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, ftp_server.password)
    healthy = [f"fast{i}" for i in range(5)]
    folders = [make_record(inbox, n, CLIENT, image_sizes={"99.jpg": 25_000}) for n in range(1, 7)]
    order: list[Outcome] = []
    lock = threading.Lock()

    def on_outcome(outcome: Outcome) -> None:
        with lock:
            order.append(outcome)

    with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        proxy.throttle(50_000)
        destinations = [ftp_destination(name, ftp_server, name, PASSWORD_ENV) for name in healthy]
        destinations.append(sftp_destination("slow", sftp_server, "slow", port=proxy.port))
        write_rules(rules_dir, rule_document(CLIENT, destinations))
        expected = expected_archives(rules_dir, folders)
        summary = export(rules_dir, state, folders, jobs=4, retries=3, on_outcome=on_outcome)

    assert len(order) == 36 and {o.result for o in order} == {"delivered"}, [(o.destination, o.error) for o in order]
    slow = [i for i, o in enumerate(order) if o.destination == f"{CLIENT}/slow"]
    fast = [i for i, o in enumerate(order) if o.destination != f"{CLIENT}/slow"]
    assert len(slow) == 6 and len(fast) == 30
    assert max(fast) < max(slow), [o.destination for o in order]
    for n in range(1, 7):
        for name in healthy:
            assert (ftp_server.root / name / archive(n)).read_bytes() == expected[archive(n)]
        assert (sftp_server.root / "slow" / archive(n)).read_bytes() == expected[archive(n)]
    assert part_files(ftp_server.root) == set() and part_files(sftp_server.root) == set()
    assert summary.count("delivered") == 36
    assert {row.status for row, _ in deliveries(state).values()} == {"delivered"}


# --- connection reuse and login refused


def test_connections_are_reused_and_a_dropped_one_is_replaced(
    inbox: Path, rules_dir: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ServerEvents()
    with (
        pyftpdlib_server("ftp", **counting_handler(events)) as server,
        FaultProxy(server.host, server.port) as proxy,
    ):
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        write_rules(
            rules_dir,
            rule_document(
                CLIENT, [ftp_destination("dms", server, "photos", PASSWORD_ENV, port=proxy.port, max_connections=1)]
            ),
        )
        first = [make_record(inbox, n, CLIENT) for n in range(1, 9)]
        ruleset = load_rules(rules_dir)
        options = Options(jobs=4, retries=3, backoff=BACKOFF, pause=30.0, spool_dir=state.parent / "spool")
        with open_ledger(state) as ledger, Exporter(ruleset, ledger, options) as exporter:
            summary = exporter.export(first)
            assert [o.result for o in summary.outcomes] == ["delivered"] * 8
            assert events["login"] == 1
            assert proxy.connections == 1

            proxy.cut_all()  # the pooled connection dies while idle
            second = [make_record(inbox, n, CLIENT) for n in range(9, 13)]
            summary = exporter.export(second)
            assert [o.result for o in summary.outcomes] == ["delivered"] * 4
            assert events["login"] == 2
            assert proxy.connections == 2

        expected = expected_archives(rules_dir, first + second)
        for n in range(1, 13):
            assert (server.root / "photos" / archive(n)).read_bytes() == expected[archive(n)]
        assert part_files(server.root) == set()
    rows = deliveries(state)
    assert len(rows) == 12
    for row, attempts in rows.values():
        assert (row.status, row.attempts, len(attempts)) == ("delivered", 1, 1), row


def test_login_refused_is_not_retried_nor_repeated_for_every_record(
    inbox: Path, rules_dir: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ServerEvents()
    max_connections = 2
    with pyftpdlib_server("ftp", **counting_handler(events)) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password + "-wrong")
        write_rules(
            rules_dir,
            rule_document(
                CLIENT, [ftp_destination("dms", server, "photos", PASSWORD_ENV, max_connections=max_connections)]
            ),
        )
        folders = [make_record(inbox, n, CLIENT) for n in range(1, 7)]

        summary = export(rules_dir, state, folders, retries=3)

        assert files_under(server.root) == {}
    # read once the server thread has stopped: it counts a failed login just after answering it
    failed_logins = events["login_failed"]
    assert events["login"] == 0
    results = sorted(o.result for o in summary.outcomes)
    failed = [o for o in summary.outcomes if o.result == "failed"]
    assert 1 <= len(failed) <= max_connections, results
    assert results == ["deferred"] * (6 - len(failed)) + ["failed"] * len(failed)
    assert failed_logins == len(failed)  # one try each, not one per record, not retried
    rows = deliveries(state)
    for outcome in summary.outcomes:
        row, attempts = rows[(outcome.record_id, outcome.destination)]
        if outcome.result == "failed":
            assert (row.status, row.attempts, len(attempts)) == ("failed", 1, 1)
            assert "login refused" in row.last_error and "530" in row.last_error
        else:
            assert (row.status, row.attempts, attempts) == ("pending", 0, [])
            assert PAUSED.search(row.last_error), row.last_error
            assert "login refused" in row.last_error


def test_open_connections_never_exceed_jobs_across_many_destinations(
    inbox: Path, rules_dir: Path, state: Path, ftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12 destinations, 3 records each, --jobs 3: idle connections of other destinations are closed
    before a new one is opened, so at most 3 are ever open (counted where they are made and closed)."""
    import ftpexport.transport.pool as pool_module

    lock = threading.Lock()
    open_now, peak, made = [0], [0], [0]
    real_open = pool_module.open_transport

    def counted_open(endpoint: Any) -> Any:
        transport = real_open(endpoint)
        real_close = transport.close
        closed = [False]

        def close() -> None:
            with lock:
                if not closed[0]:
                    closed[0] = True
                    open_now[0] -= 1
            real_close()

        transport.close = close
        with lock:
            made[0] += 1
            open_now[0] += 1
            peak[0] = max(peak[0], open_now[0])
        return transport

    monkeypatch.setattr(pool_module, "open_transport", counted_open)
    monkeypatch.setenv(PASSWORD_ENV, ftp_server.password)
    names = [f"d{i:02d}" for i in range(12)]
    write_rules(rules_dir, rule_document(CLIENT, [ftp_destination(n, ftp_server, n, PASSWORD_ENV) for n in names]))
    folders = [make_record(inbox, n, CLIENT) for n in range(1, 4)]

    summary = export(rules_dir, state, folders, jobs=3, retries=0)

    assert summary.count("delivered") == 36
    assert peak[0] <= 3, f"{peak[0]} connections open at once with --jobs 3"
    assert made[0] >= 12  # every destination got a connection of its own at some point
    assert open_now[0] == 0  # all closed at the end

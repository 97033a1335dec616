"""The SQLite backend of the ledger: open_ledger, the file (folder, modes, full disk), its schema versions
and migrations, route_totals."""

from __future__ import annotations

import re
import sqlite3
import stat
from pathlib import Path

import pytest
from filemodes import umask
from ledger_helpers import open_delivery

from ftpexport.errors import ConfigError, StateError
from ftpexport.ledger import SCHEMA_VERSION, SQLiteLedger, open_ledger


def test_reopening_the_file_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with open_ledger(path) as ledger:
        delivery = open_delivery(ledger)
        attempt = ledger.start_attempt(delivery.id, "c1")
        ledger.succeed(delivery.id, attempt, ["photos/V.zip"], 99)
        failed = open_delivery(ledger, "veh-2")
        ledger.fail(failed.id, ledger.start_attempt(failed.id, "c2"), "550 denied", final=True)
        before = [d.as_dict() for d in ledger.deliveries()]

    with open_ledger(path) as reopened:
        assert [d.as_dict() for d in reopened.deliveries()] == before
        assert [a["result"] for a in reopened.attempts(delivery.id)] == ["delivered"]
        again = open_delivery(reopened)
        assert (again.id, again.status) == (delivery.id, "delivered")


def test_the_ledger_file_records_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    open_ledger(path).close()

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_ledger_from_a_newer_schema_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE future (x)")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    before = path.read_bytes()

    with pytest.raises(ConfigError) as caught:
        open_ledger(path)

    assert caught.value.exit_code == 2
    assert f"{path}: the ledger was written by a newer ftpexport (schema {SCHEMA_VERSION + 1})" in str(caught.value)
    assert "upgrade ftpexport" in str(caught.value)
    # the file was left alone, and not left open
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite"]


def test_a_file_that_is_not_a_ledger_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a SQLite database, " * 100)

    with pytest.raises(ConfigError, match=re.escape(f"{path}: cannot open the ledger")):
        open_ledger(path)


def test_a_ledger_path_under_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    with pytest.raises(ConfigError, match="cannot open the ledger"):
        open_ledger(tmp_path / "file" / "ledger.sqlite")


def test_the_ledger_is_created_with_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.sqlite"

    with open_ledger(path) as ledger:
        open_delivery(ledger)

    assert path.is_file()


def test_a_schema_1_ledger_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with open_ledger(path) as ledger:
        delivery = open_delivery(ledger)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE files")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    with open_ledger(path) as ledger:
        assert ledger.get(delivery.id).status == "pending"
        ledger.mark_files(delivery.id, {"A.zip": "published"})
        assert ledger.file_states(delivery.id) == {"A.zip": "published"}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    db.close()


def test_a_schema_2_ledger_gains_the_vin_and_the_notifications_outbox(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    with open_ledger(path) as ledger:
        delivery = open_delivery(ledger)
    db = sqlite3.connect(path)
    db.execute("DROP INDEX deliveries_by_route")
    db.execute("ALTER TABLE deliveries DROP COLUMN vin")
    db.execute("ALTER TABLE deliveries DROP COLUMN user_id")
    db.execute("DROP TABLE notifications")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()

    with open_ledger(path) as ledger:
        assert ledger.get(delivery.id).vin is None  # rows of before keep going
        again = ledger.open_delivery(record_id="r2", content_hash="h", client_id="c", destination="c/d",
                                     record_path="/in/r2", vin="1HGCM82633A004352", user_id="u-1")  # fmt: skip
        assert (again.vin, again.user_id) == ("1HGCM82633A004352", "u-1")
        ledger.add_notification(webhook_id="msg_1", delivery_id=again.id, client_id="c", event="vehicle.delivered",
                                url="https://example.com/", payload="{}", correlation_id="abc")  # fmt: skip
        assert [n["webhook_id"] for n in ledger.due_notifications()] == ["msg_1"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 6
    db.close()


def _counted(path: Path) -> dict[tuple[str, str, str], int]:
    """What route_totals must hold: the deliveries counted the slow way."""
    with sqlite3.connect(path) as db:
        truth = {
            (c, d, s): n
            for c, d, s, n in db.execute(
                "SELECT client_id, destination, status, COUNT(*) FROM deliveries GROUP BY 1, 2, 3"
            )
        }
        totals = {(c, d, s): n for c, d, s, n in db.execute("SELECT * FROM route_totals WHERE n != 0")}
    assert totals == truth
    return totals


def test_route_totals_follow_every_change_of_the_deliveries(tmp_path: Path) -> None:
    import random

    path = tmp_path / "ledger.sqlite"
    rng = random.Random(6)
    with open_ledger(path) as ledger:
        for step in range(400):
            destination = rng.choice(["acme/dms", "acme/backup", "bravo/dms"])
            delivery = open_delivery(ledger, f"veh-{rng.randrange(40)}", f"h{rng.randrange(3)}", destination)
            action = rng.randrange(6)
            if action < 4 and delivery.status == "pending":
                attempt = ledger.start_attempt(delivery.id, f"c{step}")
                if action == 0:
                    ledger.succeed(delivery.id, attempt, ["x.zip"], 10)
                else:
                    ledger.fail(delivery.id, attempt, "boom", final=action == 1)
            elif action == 4:
                ledger.requeue(destination=destination)
            else:
                ledger.give_up_on_missing(delivery.record_path, "gone")
        # a destination with only a parked failure: its oldest undelivered is that one
        parked = open_delivery(ledger, "veh-old", destination="zulu/dms")
        ledger.fail(parked.id, ledger.start_attempt(parked.id, "c"), "boom", final=True)
        totals = _counted(path)
        assert {s for _, _, s in totals} == {"pending", "delivered", "failed", "superseded"}
        zulu = ledger.routes(client_id="zulu")[0]
        assert zulu["oldest_undelivered"] == ledger.get(parked.id).created_at
        # the answer from the totals is the answer of the full count (which `--since` still uses)
        assert ledger.routes() == ledger.routes(since="0")
        assert ledger.routes(client_id="acme") == ledger.routes(client_id="acme", since="0")
        assert [r["destination"] for r in ledger.routes()] == ["acme/backup", "acme/dms", "bravo/dms", "zulu/dms"]


def test_a_schema_3_ledger_gains_route_totals_counted_from_its_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite"
    with open_ledger(path) as ledger:
        for n in range(5):
            delivery = open_delivery(ledger, f"veh-{n}", destination="acme/dms" if n % 2 else "bravo/dms")
            if n < 3:
                ledger.succeed(delivery.id, ledger.start_attempt(delivery.id, "c"), ["x.zip"], 1)
    db = sqlite3.connect(path)
    for name in ("route_totals_insert", "route_totals_update", "route_totals_delete"):
        db.execute(f"DROP TRIGGER {name}")
    db.execute("DROP TABLE route_totals")
    db.execute("DROP TABLE records_seen")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()

    with open_ledger(path) as ledger:
        open_delivery(ledger, "veh-9", destination="acme/dms")
        assert {(r["destination"], r["delivered"], r["pending"]) for r in ledger.routes()} == {
            ("acme/dms", 1, 2),
            ("bravo/dms", 2, 1),
        }
    assert _counted(path)[("acme", "acme/dms", "pending")] == 2
    with open_ledger(path):
        pass  # opened again: counted once, not twice
    _counted(path)


def test_the_ledger_its_folder_and_its_wal_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"
    with umask(0o022), open_ledger(path) as ledger:
        open_delivery(ledger)
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    assert files == {"ledger.sqlite3": 0o600, "ledger.sqlite3-wal": 0o600, "ledger.sqlite3-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_ledger_left_0644_by_an_older_version_is_narrowed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with umask(0o022):
        db = sqlite3.connect(path)  # as an older ftpexport made it: SQLite's own 0644
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        db.commit()
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        with open_ledger(path) as ledger:
            open_delivery(ledger)
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        db.close()
    assert modes == {"ledger.sqlite3": 0o600, "ledger.sqlite3-wal": 0o600, "ledger.sqlite3-shm": 0o600}


def test_opening_a_complete_ledger_writes_nothing(tmp_path: Path) -> None:
    # so that `status` can still read a ledger whose disk is full
    path = tmp_path / "ledger.sqlite3"
    with open_ledger(path) as ledger:
        open_delivery(ledger)
    with open_ledger(path) as ledger:
        assert ledger.get(1).record_id == "veh-1"
        assert (tmp_path / "ledger.sqlite3-wal").stat().st_size == 0


def test_a_full_disk_is_a_state_error_naming_the_file_and_the_ledger_goes_on_once_there_is_room(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"
    with open_ledger(path) as ledger:
        first = open_delivery(ledger)
        # SQLite's own "database or disk is full": the file may not grow by a single page
        pages = ledger._db.execute("PRAGMA page_count").fetchone()[0]
        ledger._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StateError) as caught:
            for n in range(1000):
                open_delivery(ledger, f"veh-full-{n}")
        assert caught.value.exit_code == 1
        assert str(caught.value).startswith(
            f"{path}: cannot write the ledger: database or disk is full (free space on the disk of {path.parent}"
        )
        assert ledger.get(first.id).status == "pending"  # reading goes on
        ledger._db.execute(f"PRAGMA max_page_count = {pages * 100}")
        # no transaction was left open behind the error: the next write goes through
        attempt = ledger.start_attempt(first.id, "c1")
        ledger.succeed(first.id, attempt, ["x.zip"], 1)
        assert ledger.get(first.id).status == "delivered"


def test_a_schema_4_ledger_gains_the_refused_records(tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite"
    with open_ledger(path) as ledger:
        open_delivery(ledger)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE refused_records")
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()

    with open_ledger(path) as ledger:
        assert ledger.refused() == []
        ledger.refuse("/inbox/x", kind="record", reason="bad")
        assert ledger.refused_counts() == {"": 1}
        assert ledger.get(1).record_id == "veh-1"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6


@pytest.mark.parametrize("as_text", [False, True])
def test_open_ledger_opens_a_sqlite_file_for_a_path(tmp_path: Path, as_text: bool) -> None:
    path = tmp_path / "state" / "ledger.sqlite3"

    with open_ledger(str(path) if as_text else path) as ledger:
        assert isinstance(ledger, SQLiteLedger)
        open_delivery(ledger)

    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM deliveries").fetchone() == (1,)


def test_open_ledger_refuses_a_url_of_an_unknown_scheme_without_showing_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a URL taken for a relative path would create a folder "mysql:" here

    with pytest.raises(ConfigError) as raised:
        open_ledger("mysql://exporter:s3cret@db.example:3306/ledger?sslmode=require")

    message = str(raised.value)
    # the user name, host, port, database and options are shown (they say which ledger); the password never
    assert "--state mysql://exporter@db.example:3306/ledger?sslmode=require" in message
    assert "no ledger backend for URLs of scheme 'mysql'" in message
    assert "s3cret" not in message
    assert raised.value.hint == "pass the path of a SQLite file as --state (e.g. .ftpexport/ledger.sqlite3)"
    assert list(tmp_path.iterdir()) == []  # nothing created: not taken for a file

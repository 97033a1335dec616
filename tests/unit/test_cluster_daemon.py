"""A process on a shared ledger (``--state`` a URL): no lock file, a spool of its own, announced
and gone (register/leave), the attempts of dead hosts closed at start and on every housekeeping
tick. The URL scheme ``fake://`` opens a ``FencedLedger`` of an in-memory ``FakeCluster``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_coordination import FakeCluster, FencedLedger

from ftpexport import daemon, ledger
from ftpexport.ledger import SQLiteLedger
from ftpexport.pipeline import Exporter, Options
from ftpexport.rules import RuleSet

URL = "fake://exporter@db.example:5432/ftpexport"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCluster]:
    cluster = FakeCluster()
    opened: list[float] = []

    def backend(url: str, lease: float, retry_for: float | None) -> FencedLedger:
        opened.append(lease)
        return FencedLedger(tmp_path / "db" / "ledger.sqlite3", cluster.host("host-a:1:aaaaaa", lease))

    (tmp_path / "db").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.setitem(ledger._URL_BACKENDS, "fake", backend)
    monkeypatch.chdir(tmp_path / "cwd")
    cluster.opened = opened  # type: ignore[attr-defined]
    yield cluster


def test_a_url_state_has_no_lock_file_and_a_spool_of_its_own(cluster: FakeCluster, tmp_path: Path) -> None:
    assert daemon.spool_dir(URL) is None
    assert daemon.spool_dir(tmp_path / "ledger.sqlite3") == tmp_path / "ledger.sqlite3.spool"
    options = Options(spool_dir=tmp_path / "shared-spool", lease=9.0)

    with daemon.ledger_for(URL, options) as (shared, used):
        assert isinstance(shared, FencedLedger)
        assert used.spool_dir == daemon.shared_spool_root() and used.lease == 9.0
        assert [c[1] for c in cluster.calls] == ["register"]
        assert shared.closed_interrupted == 1  # the attempts of hosts that died are closed at start
        assert list((tmp_path / "cwd").iterdir()) == []  # nothing of its own on the disk, no lock file

    assert cluster.opened == [9.0]  # type: ignore[attr-defined]
    assert [c[1] for c in cluster.calls] == ["register", "leave"]
    assert not list(tmp_path.glob("**/*.lock"))


def test_a_host_leaves_also_when_the_export_fails(cluster: FakeCluster) -> None:
    with pytest.raises(RuntimeError), daemon.ledger_for(URL, Options()):
        raise RuntimeError("the export failed")
    assert [c[1] for c in cluster.calls] == ["register", "leave"]


def test_every_housekeeping_tick_closes_the_attempts_of_dead_hosts(cluster: FakeCluster, tmp_path: Path) -> None:
    with daemon.ledger_for(URL, Options()) as (shared, options):
        assert isinstance(shared, FencedLedger)
        with Exporter(RuleSet(tmp_path), shared, options) as exporter:
            exporter.housekeeping()
            exporter.housekeeping()
        assert shared.closed_interrupted == 3


def test_a_ledger_held_alone_closes_attempts_only_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # behind its lock file no other process runs attempts; during the run they are all its own
    closed: list[int] = []
    original = SQLiteLedger.close_interrupted
    monkeypatch.setattr(SQLiteLedger, "close_interrupted", lambda self: closed.append(1) or original(self))
    state = tmp_path / "ledger.sqlite3"
    with daemon.ledger_for(state, Options(spool_dir=daemon.spool_dir(state))) as (held, options):
        assert options.spool_dir == tmp_path / "ledger.sqlite3.spool"
        assert closed == [1]
        with Exporter(RuleSet(tmp_path), held, options) as exporter:
            exporter.housekeeping()
        assert closed == [1]


def test_a_host_that_cannot_leave_says_so_and_ends_normally(
    cluster: FakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    with daemon.ledger_for(URL, Options(lease=7.0)):
        cluster.down = True  # the database went away during the run
    assert [c[1] for c in cluster.calls] == ["register", "leave"]
    [warning] = [r for r in caplog.records if "could not leave the shared ledger" in r.getMessage()]
    assert "free in 7 s" in warning.getMessage() and "password" not in warning.getMessage()


def test_the_spool_folders_of_killed_processes_are_removed_at_start(
    cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "shared_spool_root", lambda: tmp_path / "spools")
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()  # a pid that no longer runs
    orphan = tmp_path / "spools" / f"ftpexport-{killed.pid}-x1"
    alive = tmp_path / "spools" / f"ftpexport-{os.getppid()}-x2"  # another process that still runs
    for folder in (orphan, alive):
        folder.mkdir(parents=True)
        (folder / "WVW.zip").write_bytes(b"half an archive")

    with daemon.ledger_for(URL, Options()) as (shared, options), Exporter(RuleSet(tmp_path), shared, options) as exp:
        assert exp._spool.parent == tmp_path / "spools"
        assert exp._spool.name.startswith(f"ftpexport-{os.getpid()}-")

    assert not orphan.exists()
    assert (alive / "WVW.zip").exists()

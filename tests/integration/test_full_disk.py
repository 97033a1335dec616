"""A full disk under the state folder: an expected failure, told in one line, and nothing lost.

The state folder lives on a real tmpfs of a few megabytes (``disks.small_disk``), filled
with a file until the kernel answers ENOSPC: before a run, while a file is being uploaded (the FTP
server of the test fills it when the upload starts), with the spool's zips, and under a running
daemon. Each time: exit status 1, one ``ftpexport: error:`` line naming the path and saying to
free space, the summary (for ``run``), no traceback and no "please report it"; the deliveries that
were not recorded as done are pending, never failed; once the space is back, the next run delivers
every record exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from disks import fill, small_disk
from ftp_handlers import FtpSpy
from ledger_rows import deliveries
from polling import eventually
from processes import ExporterProcess, start_watch
from records import make_record
from rulefiles import write_rules
from servers import RunningServer, pyftpdlib_server

pytestmark = pytest.mark.integration

PASSWORD_ENV = "DISK_FTP_PASSWORD"
SUMMARY = re.compile(r"^\d+ delivered, \d+ unchanged, \d+ failed, \d+ deferred, \d+ parked earlier, \d+ refused")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "8m") as mounted:
        yield mounted


def _rules(tmp_path: Path, server: RunningServer, folders: tuple[str, ...] = ("dms",)) -> Path:
    """One destination per folder of ``server``. One: its zips are read from the images as they are
    sent; several: each zip is built once in the spool for all of them."""
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    destinations = "".join(
        f"  - {{name: {folder}, url: '{server.url(folder)}', password: '${{{PASSWORD_ENV}}}', allow_plain_ftp: true}}\n"
        for folder in folders
    )
    write_rules(rules, f"client_id: acme-motors\ndestinations:\n{destinations}", "acme-motors")
    return rules


def _run(inbox: Path, rules: Path, state: Path, server: RunningServer) -> ExporterProcess:
    return ExporterProcess("run", inbox, "--rules", rules, "--state", state, env={PASSWORD_ENV: server.password})


def _expected_failure(run: ExporterProcess, *, summary: bool = True) -> str:
    """Exit 1, the last line of stderr is the one error line (returned), the summary is on stdout."""
    assert run.wait() == 1, run.stderr + run.stdout
    assert "Traceback" not in run.stderr and "please report it" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("ftpexport: error: ")]
    assert len(errors) == 1 and run.stderr.splitlines()[-1] == errors[0], run.stderr
    if summary:
        assert any(SUMMARY.match(line) for line in run.stdout.splitlines()), run.stdout
    return errors[0]


def _delivered_once(spy: FtpSpy, server: RunningServer, numbers: range, folders: tuple[str, ...] = ("dms",)) -> None:
    names = {f"{folder}/WVWZZZAUZLW{n:06d}.zip" for n in numbers for folder in folders}
    assert spy.renamed(server.root) == dict.fromkeys(names, 1)


def test_a_run_on_a_disk_full_from_the_start_says_so_in_one_line(tmp_path: Path, disk: Path) -> None:
    with pyftpdlib_server("ftp") as server:
        inbox = tmp_path / "inbox"
        make_record(inbox, 901, name="veh-d1")
        state = disk / "state" / "ledger.sqlite3"
        filler = fill(disk)

        with _run(inbox, _rules(tmp_path, server), state, server) as run:
            line = _expected_failure(run, summary=False)
        assert line.startswith(f"ftpexport: error: {state}")
        assert f"free space on the disk of {state.parent}" in line

        filler.unlink()
        with _run(inbox, _rules(tmp_path, server), state, server) as run:
            assert run.wait() == 0, run.stderr
        assert [row["status"] for row in deliveries(state)] == ["delivered"]


def test_a_disk_that_fills_during_an_upload_stops_the_run_and_loses_nothing(tmp_path: Path, disk: Path) -> None:
    spy = FtpSpy()
    attributes = spy.attributes()
    counted_store = attributes["ftp_STOR"]
    filled: list[Path] = []

    def store(handler: object, file: str, mode: str = "w") -> object:
        if not filled:
            filled.append(fill(disk))  # the first upload starts: the ledger's next write meets a full disk
        return counted_store(handler, file, mode)

    attributes["ftp_STOR"] = store
    with pyftpdlib_server("ftp", **attributes) as server:
        inbox = tmp_path / "inbox"
        for n in range(3):
            make_record(inbox, 910 + n, name=f"veh-d{n}")
        rules = _rules(tmp_path, server)
        state = disk / "state" / "ledger.sqlite3"

        with _run(inbox, rules, state, server) as run:
            line = _expected_failure(run)
        assert filled
        assert line.startswith(f"ftpexport: error: {state}: cannot write the ledger: database or disk is full")
        assert f"free space on the disk of {state.parent}" in line
        assert "deferred" in run.stdout
        # what was not recorded as delivered is pending (or not opened yet: its record is in the inbox)
        assert {row["status"] for row in deliveries(state)} <= {"pending", "delivered"}

        filled[0].unlink()
        with _run(inbox, rules, state, server) as run:
            assert run.wait() == 0, run.stderr
        assert [row["status"] for row in deliveries(state)] == ["delivered"] * 3
        _delivered_once(spy, server, range(910, 913))


def test_a_spool_that_fills_up_stops_the_run_with_the_deliveries_pending(tmp_path: Path, disk: Path) -> None:
    spy = FtpSpy()
    folders = ("dms", "dms2")  # two destinations: the zips are built in the spool
    with pyftpdlib_server("ftp", **spy.attributes()) as server:
        inbox = tmp_path / "inbox"
        make_record(inbox, 920, name="veh-d0")
        rules = _rules(tmp_path, server, folders)
        state = disk / "state" / "ledger.sqlite3"
        with _run(inbox, rules, state, server) as run:
            assert run.wait() == 0, run.stderr  # the ledger exists, with room for a few more deliveries
        for n in (1, 2):
            make_record(inbox, 920 + n, name=f"veh-d{n}", image_sizes={"1.jpg": 3_000_000})
        filler = fill(disk, leave=1_000_000)  # less than one zip

        with _run(inbox, rules, state, server) as run:
            line = _expected_failure(run)
        # the zip meets the full disk first, or the ledger's next write does: both are the state folder
        assert re.match(
            rf"ftpexport: error: ({re.escape(str(state))}: cannot write the ledger|{re.escape(str(state))}.spool: "
            r"cannot build the package of \S+veh-d\d: No space left on device)",
            line,
        ), line
        assert "free space on the disk of" in line
        assert {row["status"] for row in deliveries(state)} <= {"pending", "delivered"}
        assert not list(state.parent.rglob("*.zip"))  # what was written of it was given back

        filler.unlink()
        with _run(inbox, rules, state, server) as run:
            assert run.wait() == 0, run.stderr
        assert [row["status"] for row in deliveries(state)] == ["delivered"] * 6
        _delivered_once(spy, server, range(920, 923), folders)


def test_a_zip_for_one_destination_needs_no_room_in_the_spool(tmp_path: Path, disk: Path) -> None:
    spy = FtpSpy()
    with pyftpdlib_server("ftp", **spy.attributes()) as server:
        inbox = tmp_path / "inbox"
        make_record(inbox, 930, name="veh-e0")
        rules = _rules(tmp_path, server)
        state = disk / "state" / "ledger.sqlite3"
        with _run(inbox, rules, state, server) as run:
            assert run.wait() == 0, run.stderr
        for n in (1, 2):
            make_record(inbox, 930 + n, name=f"veh-e{n}", image_sizes={"1.jpg": 3_000_000})
        filler = fill(disk, leave=1_000_000)  # less than one zip: room for the ledger only

        with _run(inbox, rules, state, server) as run:
            assert run.wait() == 0, run.stderr + run.stdout
        filler.unlink()

        assert [row["status"] for row in deliveries(state)] == ["delivered"] * 3
        _delivered_once(spy, server, range(930, 933))


def test_a_daemon_whose_disk_fills_up_says_so_once_and_exits_1(tmp_path: Path, disk: Path) -> None:
    spy = FtpSpy()
    with pyftpdlib_server("ftp", **spy.attributes()) as server:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        rules = _rules(tmp_path, server)
        state = disk / "state" / "ledger.sqlite3"
        env = {PASSWORD_ENV: server.password}
        with start_watch(inbox, rules, state, env=env) as daemon:
            filler = fill(disk)
            make_record(inbox, 930, name="veh-d1")
            eventually(lambda: not daemon.alive(), "the daemon to stop")
            assert daemon.wait() == 1, daemon.stderr
        assert "Traceback" not in daemon.stderr and "please report it" not in daemon.stderr, daemon.stderr
        [stopping] = [e for e in daemon.events() if e["level"] == "error"]
        assert stopping["message"].startswith(f"stopping: {state}: cannot write the ledger: database or disk is full")
        assert f"free space on the disk of {state.parent}" in stopping["message"]

        filler.unlink()
        with start_watch(inbox, rules, state, env=env) as daemon:
            eventually(lambda: [row["status"] for row in deliveries(state)] == ["delivered"], "the delivery")
            daemon.terminate()
            assert daemon.wait() == 0, daemon.stderr
        _delivered_once(spy, server, range(930, 931))

"""What ``run`` and ``watch`` write under their state folder is their user's alone, whatever the umask.

Under umask 022 a real ``run`` and a real ``watch`` export a record to a pyftpdlib server slowed
down enough that its zip waits in the spool; the state folder is walked while the upload runs and
again after: the folder, the ledger and its -wal and -shm, the lock, the spool, the zip and the
log file are all closed to group and others.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_runner import invoke
from filemodes import modes, open_to_others, umask
from ftp_handlers import throttled_dtp
from polling import eventually
from processes import ExporterProcess, start_watch
from records import make_record
from rulefiles import write_rules
from servers import RunningServer, pyftpdlib_server

pytestmark = pytest.mark.integration

PASSWORD_ENV = "STATE_FTP_PASSWORD"


def _rules(tmp_path: Path, server: RunningServer) -> Path:
    """Two destinations, so that the zip is built in the spool (for one, it is read from the images as it is sent)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    destinations = "".join(
        f"  - {{name: {name}, url: '{server.url(name)}', password: '${{{PASSWORD_ENV}}}', allow_plain_ftp: true}}\n"
        for name in ("dms", "dms2")
    )
    write_rules(rules, f"client_id: acme-motors\ndestinations:\n{destinations}", "acme-motors")
    return rules


def _zips(state_folder: Path) -> list[Path]:
    return sorted(state_folder.rglob("*.zip"))


def _check_while_uploading(state_folder: Path, dtp: type, process: ExporterProcess, what: str) -> set[str]:
    """Wait for the zip in the spool, walk the state folder, then let the upload go at full speed."""
    eventually(lambda: _zips(state_folder) or not process.alive(), f"the zip of the record in the spool of {what}")
    assert process.alive(), process.stderr
    seen = set(modes(state_folder))
    assert open_to_others(state_folder) == {}, modes(state_folder)
    dtp.read_limit = 0  # type: ignore[attr-defined]
    return seen


def test_everything_a_run_creates_is_private_under_umask_022(tmp_path: Path) -> None:
    dtp = throttled_dtp(50_000)
    with pyftpdlib_server("ftp", dtp_handler=dtp) as server:
        inbox = tmp_path / "inbox"
        make_record(inbox, 801, name="veh-s1", image_sizes={"1.jpg": 1_500_000})
        rules = _rules(tmp_path, server)
        state_folder = tmp_path / "state"
        with umask(0o022):
            run = ExporterProcess(
                "--log-file", state_folder / "ftpexport.log", "run", inbox, "--rules", rules,
                "--state", state_folder / "ledger.sqlite3", env={PASSWORD_ENV: server.password},
            )  # fmt: skip
        with run:
            seen = _check_while_uploading(state_folder, dtp, run, "run")
            assert run.wait() == 0, run.stderr
        assert {"ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm", "ledger.sqlite3.lock",
                "ledger.sqlite3.spool", "ftpexport.log"} <= seen, seen  # fmt: skip
        assert open_to_others(state_folder) == {}, modes(state_folder)
        assert (server.root / "dms" / "WVWZZZAUZLW000801.zip").is_file()
        assert (tmp_path / "inbox").stat().st_mode & 0o077  # only what ftpexport creates is narrowed


def test_everything_a_watch_creates_is_private_under_umask_022(tmp_path: Path) -> None:
    dtp = throttled_dtp(50_000)
    with pyftpdlib_server("ftp", dtp_handler=dtp) as server:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        rules = _rules(tmp_path, server)
        state_folder = tmp_path / "state"
        with umask(0o022):
            daemon = start_watch(inbox, rules, state_folder / "ledger.sqlite3", env={PASSWORD_ENV: server.password})
        with daemon:
            make_record(inbox, 802, name="veh-s2", image_sizes={"1.jpg": 1_500_000})
            seen = _check_while_uploading(state_folder, dtp, daemon, "watch")
            eventually(lambda: (server.root / "dms" / "WVWZZZAUZLW000802.zip").is_file(), "the delivery")
            daemon.terminate()
            assert daemon.wait() == 0, daemon.stderr
        assert {"ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm", "ledger.sqlite3.lock"} <= seen, seen
        assert open_to_others(state_folder) == {}, modes(state_folder)
        assert os.stat(state_folder).st_mode & 0o777 == 0o700


def test_a_log_file_that_cannot_be_made_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    log_file = tmp_path / "file" / "ftpexport.log"
    result = invoke("--log-file", log_file, "status", "--state", tmp_path / "l.sqlite3")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"ftpexport: error: {log_file}: cannot open the log file: "), result.output
    assert result.stderr.rstrip().endswith("(check --log-file)")

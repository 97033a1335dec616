"""Records whose every delivery is done are not read again while their folder and the rules stay the same.

A run over an inbox of records delivered already used to read and hash every image again. The
ledger now remembers each such folder's files (names, sizes, times, inodes) and the rules; these
tests count how often a record is read (``load_record``, wrapped, still doing its work) against a
real FTP server, and check each reason to read it again.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faults import closed_port
from servers import RunningServer

import ftpexport.intake
from ftpexport.events import Summary
from ftpexport.ledger import open_ledger
from ftpexport.pipeline import Exporter, Options
from ftpexport.record import Record
from ftpexport.rules import load_rules

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
RECORD = "veh-000124"  # acme-motors, user u-7 (no destination of their own)
ZIP = "dms/WVWZZZAUZLW000124.zip"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The record folders read by the pipeline, in order (the real load_record does the work)."""
    seen: list[Path] = []
    real: Callable[..., Record] = ftpexport.intake.load_record

    def counting(folder: Path, *args: Any, **kwargs: Any) -> Record:
        seen.append(folder)
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(ftpexport.intake, "load_record", counting)
    return seen


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    shutil.copytree(SAMPLES / RECORD, folder / RECORD)
    return folder


def _rules(folder: Path, ftp_server: RunningServer, *, dead: bool = False) -> Path:
    folder.mkdir(exist_ok=True)
    extra = (
        f"""
  - name: down
    url: ftp://user@127.0.0.1:{closed_port()}/x
    password: ${{UNCHANGED_FTP_PASSWORD}}
    allow_plain_ftp: true
    timeout: 2
"""
        if dead
        else ""
    )
    (folder / "acme-motors.yaml").write_text(
        f"""
client_id: acme-motors
upload:
  retries: 0
destinations:
  - name: dms
    url: {ftp_server.url("dms")}
    password: ${{UNCHANGED_FTP_PASSWORD}}
    allow_plain_ftp: true
{extra}"""
    )
    return folder


@pytest.fixture
def run(
    tmp_path: Path, inbox: Path, ftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Path], Summary]]:
    """Export the inbox once with the rules of a folder, as ``ftpexport run`` does; the same ledger each time."""
    monkeypatch.setenv("UNCHANGED_FTP_PASSWORD", ftp_server.password)
    ledger = open_ledger(tmp_path / "ledger.sqlite3")

    def once(rules: Path) -> Summary:
        with Exporter(load_rules(rules), ledger, Options(jobs=2, retries=0)) as exporter:
            return exporter.export(sorted(inbox.iterdir()))

    yield once
    ledger.close()


def test_a_record_delivered_everywhere_is_not_read_again(
    tmp_path: Path, inbox: Path, ftp_server: RunningServer, reads: list[Path], run: Callable[[Path], Summary]
) -> None:
    rules = _rules(tmp_path / "rules", ftp_server)
    first = run(rules)
    assert (first.count("delivered"), len(reads)) == (1, 1)
    ftp_server.clear_root()  # if the next runs uploaded anything, it would reappear

    for _ in range(2):
        again = run(rules)
        assert (again.count("unchanged"), again.count("delivered")) == (1, 0)
        assert len(reads) == 1, "the record was read again"
        outcome = again.outcomes[0]
        assert (outcome.record_id, outcome.destination, outcome.vin) == (RECORD, "acme-motors/dms", "WVWZZZAUZLW000124")
        assert outcome.remote_paths == first.outcomes[0].remote_paths
    assert not (ftp_server.root / ZIP).exists()


def test_an_image_rewritten_with_its_old_size_and_time_is_read_and_sent_again(
    tmp_path: Path, inbox: Path, ftp_server: RunningServer, reads: list[Path], run: Callable[[Path], Summary]
) -> None:
    rules = _rules(tmp_path / "rules", ftp_server)
    run(rules)
    image = sorted((inbox / RECORD).glob("*.jpg"))[0]
    before = image.stat()
    data = bytearray(image.read_bytes())
    data[-1] ^= 0xFF  # same size
    image.write_bytes(bytes(data))
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old time put back, as `cp -p` would
    assert (image.stat().st_size, image.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    again = run(rules)
    assert len(reads) == 2
    assert again.count("delivered") == 1
    with zipfile.ZipFile(ftp_server.root / ZIP) as archive:
        assert bytes(data) in {archive.read(name) for name in archive.namelist()}


def test_a_changed_rule_file_has_every_record_read_again_once(
    tmp_path: Path, ftp_server: RunningServer, reads: list[Path], run: Callable[[Path], Summary]
) -> None:
    rules = _rules(tmp_path / "rules", ftp_server)
    run(rules)
    path = rules / "acme-motors.yaml"
    path.write_text(path.read_text() + "# reviewed\n")

    assert run(rules).count("unchanged") == 1
    assert len(reads) == 2, "the rules changed: the record must be planned again"
    assert run(rules).count("unchanged") == 1
    assert len(reads) == 2


def test_a_record_with_a_parked_delivery_is_read_every_time(
    tmp_path: Path, ftp_server: RunningServer, reads: list[Path], run: Callable[[Path], Summary]
) -> None:
    rules = _rules(tmp_path / "rules", ftp_server, dead=True)
    first = run(rules)
    assert (first.count("delivered"), first.count("failed")) == (1, 1)

    for n in (2, 3):
        again = run(rules)
        assert (again.count("unchanged"), again.count("parked")) == (1, 1)
        assert len(reads) == n


def test_a_delivery_gone_from_the_ledger_has_the_record_read_and_sent_again(
    tmp_path: Path, ftp_server: RunningServer, reads: list[Path], run: Callable[[Path], Summary]
) -> None:
    rules = _rules(tmp_path / "rules", ftp_server)
    run(rules)
    ftp_server.clear_root()
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        db.execute("DELETE FROM attempts")
        db.execute("DELETE FROM files")
        db.execute("DELETE FROM deliveries")

    again = run(rules)
    assert (again.count("delivered"), len(reads)) == (1, 2)
    assert (ftp_server.root / ZIP).exists()

"""The watch daemon: picks up complete records once, exports them, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import eventually
from rulefiles import ftp_destination, rule_document, write_rules
from servers import RunningServer

from ftpexport.events import Summary
from ftpexport.ledger import Ledger, open_ledger
from ftpexport.pipeline import Exporter, Options
from ftpexport.rules import load_rules
from ftpexport.watch import InboxWatcher

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
DEADLINE = 20.0


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer) -> Path:
    monkeypatch.setenv("WATCH_FTP_PASSWORD", ftp_server.password)
    folder = tmp_path / "rules"
    write_rules(folder, rule_document("acme-motors", [ftp_destination("dms", ftp_server, "dms", "WATCH_FTP_PASSWORD")]))
    return folder


@pytest.fixture
def watcher(request: pytest.FixtureRequest, tmp_path: Path, rules: Path) -> Iterator[tuple[Path, Ledger, Summary]]:
    """An InboxWatcher running in a thread on an empty inbox, feeding one Exporter; stopped with an event.

    Its settle time is 0.3 s, or the test's indirect parameter.
    """
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    ledger = open_ledger(tmp_path / "ledger.sqlite3")
    summary = Summary()
    stop = threading.Event()
    exporter = Exporter(load_rules(rules), ledger, Options(jobs=2, retries=0))
    thread = threading.Thread(
        target=InboxWatcher(
            inbox,
            lambda folders: exporter.submit(folders, summary),
            stop=stop,
            settle=getattr(request, "param", 0.3),
            rescan_every=3600,
        ).run,
        name="watcher",
    )
    thread.start()
    try:
        yield inbox, ledger, summary
    finally:
        stop.set()
        thread.join(timeout=10)
        exporter.close()
        ledger.close()
        assert not thread.is_alive()


def test_a_record_written_slowly_is_exported_once_complete(
    watcher: tuple[Path, Ledger, Summary], ftp_server: RunningServer
) -> None:
    inbox, ledger, summary = watcher
    record = inbox / "veh-000124"
    record.mkdir()
    for image in sorted((SAMPLES / "veh-000124").glob("*.jpg")):
        shutil.copy(image, record / image.name)
    text = (SAMPLES / "veh-000124" / "vehicle.json").read_text()
    # vehicle.json written in two steps, the second before the settle time is over
    with (record / "vehicle.json").open("w") as stream:
        stream.write(text[: len(text) // 2])
        stream.flush()
        time.sleep(0.1)  # a slow writer, not a wait for readiness
        stream.write(text[len(text) // 2 :])

    eventually(lambda: bool(ledger.deliveries(status="delivered")), "the delivery", timeout=DEADLINE)
    # the outcome reaches the summary just after the ledger commit: wait for it too
    eventually(lambda: summary.count("delivered") > 0, "the outcome", timeout=DEADLINE)
    delivery = ledger.deliveries(status="delivered")[0]
    assert delivery.remote_paths == ("dms/WVWZZZAUZLW000124.zip",)
    assert delivery.attempts == 1
    assert (ftp_server.root / "dms/WVWZZZAUZLW000124.zip").stat().st_size == delivery.bytes
    assert not summary.record_errors, "a half-written vehicle.json was picked up"
    assert summary.count("delivered") == 1


def _images(record: Path) -> str:
    """Copy a sample record's images into ``record`` (created); return its vehicle.json text."""
    record.mkdir()
    return _images_in(record)


def _images_in(record: Path) -> str:
    for image in sorted((SAMPLES / "veh-000124").glob("*.jpg")):
        shutil.copy(image, record / image.name)
    return (SAMPLES / "veh-000124" / "vehicle.json").read_text()


NEVER = 3600.0  # a settle time no test waits for: a record delivered was taken on its writer's event


@pytest.mark.parametrize("watcher", [NEVER], indirect=True)
@pytest.mark.parametrize("how", ["renamed into place", "written in place"])
def test_a_vehicle_json_that_parses_is_taken_without_waiting_for_the_settle_time(
    watcher: tuple[Path, Ledger, Summary], ftp_server: RunningServer, how: str
) -> None:
    inbox, ledger, summary = watcher
    record = inbox / "veh-000124"
    text = _images(record)
    if how == "renamed into place":
        (record / "vehicle.json.part").write_text(text)
        (record / "vehicle.json.part").rename(record / "vehicle.json")
    else:
        (record / "vehicle.json").write_text(text)

    eventually(lambda: bool(ledger.deliveries(status="delivered")), "the delivery", timeout=DEADLINE)
    # the outcome reaches the summary just after the ledger commit: wait for it too
    eventually(lambda: summary.count("delivered") > 0, "the outcome", timeout=DEADLINE)
    assert (ftp_server.root / "dms/WVWZZZAUZLW000124.zip").stat().st_size == ledger.deliveries()[0].bytes
    assert summary.count("delivered") == 1


@pytest.mark.parametrize("watcher", [NEVER], indirect=True)
def test_a_vehicle_json_cut_short_waits_for_the_rest(
    watcher: tuple[Path, Ledger, Summary], ftp_server: RunningServer
) -> None:
    inbox, ledger, summary = watcher
    record = inbox / "veh-000124"
    text = _images(record)
    # a writer that closes the file between two writes: the first close leaves JSON cut short
    (record / "vehicle.json").write_text(text[: len(text) // 2])
    time.sleep(1.0)  # room for a wrong pick-up of the half file (it would be a record error)
    assert not summary.record_errors, "a half-written vehicle.json was picked up"
    assert not ledger.deliveries()
    with (record / "vehicle.json").open("a") as stream:
        stream.write(text[len(text) // 2 :])

    eventually(lambda: bool(ledger.deliveries(status="delivered")), "the delivery", timeout=DEADLINE)
    # the outcome reaches the summary just after the ledger commit: wait for it too
    eventually(lambda: summary.count("delivered") > 0, "the outcome", timeout=DEADLINE)
    assert not summary.record_errors
    assert ledger.deliveries()[0].attempts == 1
    assert summary.count("delivered") == 1


def test_records_present_at_startup_and_updates_are_exported(
    tmp_path: Path, rules: Path, ftp_server: RunningServer
) -> None:
    inbox = tmp_path / "inbox"
    shutil.copytree(SAMPLES / "veh-000124", inbox / "veh-000124")
    with (
        open_ledger(tmp_path / "ledger.sqlite3") as ledger,
        Exporter(load_rules(rules), ledger, Options(retries=0)) as exporter,
    ):
        stop = threading.Event()
        thread = threading.Thread(target=InboxWatcher(inbox, exporter.submit, stop=stop, settle=0.2).run)
        thread.start()
        try:
            eventually(
                lambda: len(ledger.deliveries(status="delivered")) == 1, "the startup scan's delivery", timeout=DEADLINE
            )
            # a vehicle updated: new images, vehicle.json rewritten last
            (inbox / "veh-000124" / "2.jpg").write_bytes(b"new image bytes")
            data = json.loads((inbox / "veh-000124" / "vehicle.json").read_text())
            (inbox / "veh-000124" / "vehicle.json").write_text(json.dumps({**data, "stock_number": "A1241"}))
            eventually(
                lambda: len(ledger.deliveries(status="delivered")) == 2, "the update's delivery", timeout=DEADLINE
            )
        finally:
            stop.set()
            thread.join(timeout=10)
    assert b"new image bytes" in (ftp_server.root / "dms/WVWZZZAUZLW000124.zip").read_bytes()


def test_watch_command_stops_on_sigterm_with_exit_0(tmp_path: Path, rules: Path, ftp_server: RunningServer) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state = tmp_path / "ledger.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "ftpexport", "--log-format", "json", "watch", str(inbox), "--rules", str(rules),
         "--state", str(state), "--settle", "0.2"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or []), daemon=True)
    reader.start()
    try:
        eventually(lambda: any('"watching"' in line for line in lines), "the daemon to start", timeout=DEADLINE)
        shutil.copytree(SAMPLES / "veh-000124", inbox / "veh-000124")
        eventually(lambda: (ftp_server.root / "dms/WVWZZZAUZLW000124.zip").exists(), "the export", timeout=DEADLINE)
        eventually(lambda: any('"delivered"' in line for line in lines), "the delivery log line", timeout=DEADLINE)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
    events = [json.loads(line) for line in lines if line.startswith("{")]
    delivered = [e for e in events if e["message"] == "delivered"]
    assert len(delivered) == 1 and delivered[0]["correlation_id"] and delivered[0]["bytes"] > 0
    assert events[-1]["message"] == "stopped"


def test_a_new_folder_is_followed_until_its_vehicle_json_appears_even_if_no_event_says_so(tmp_path: Path) -> None:
    # inotify misses files written in a new folder before its watch is in place: the folder's own
    # event must be enough. No observer runs here, so no event comes for vehicle.json.
    inbox = tmp_path / "inbox"
    record = inbox / "veh-000124"
    record.mkdir(parents=True)
    watcher = InboxWatcher(inbox, lambda folders: None, stop=threading.Event(), settle=NEVER, rescan_every=3600)
    watcher._pending.put(record.resolve())  # what the folder's creation event queues
    watcher._drain(timeout=0)
    assert watcher._ready() == []
    (record / "vehicle.json").write_text(_images_in(record))

    assert watcher._ready() == [record.resolve()]
    assert watcher._ready() == []  # handed over once

"""Only a record's own regular files reach the server, with the real ``run`` command and a real FTP server.

- an image hard-linked to the secrets store's key file is refused, named, and nothing of it is sent,
  with or without ``--allow-hardlinks``; an ordinary hard link is refused unless it is allowed;
- an image replaced after the record was read is not sent: its deliveries stay pending (deferred,
  not parked) and the next run, or the watch daemon at once, reads the record again and delivers it.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import shutil
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from cli_runner import invoke
from polling import eventually
from rulefiles import rule_document, sftp_destination, write_rules
from servers import RunningServer

from ftpexport import pipeline
from ftpexport.events import Summary
from ftpexport.ledger import open_ledger
from ftpexport.package import Package
from ftpexport.pipeline import Exporter, Options
from ftpexport.rules import load_rules
from ftpexport.vault import KEY_ENV, KEY_FILE_ENV, STORE_ENV
from ftpexport.watch import InboxWatcher

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _server_bytes(root: Path) -> dict[str, bytes]:
    """Every file on the server, and every member of every zip on it."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as archive:
                    found |= {f"{path.name}:{name}": archive.read(name) for name in archive.namelist()}
    return found


@pytest.fixture(autouse=True)
def _no_store_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (KEY_ENV, KEY_FILE_ENV, STORE_ENV, "FTPEXPORT_ALLOW_HARDLINKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _rules(tmp_path: Path, server: RunningServer, monkeypatch: pytest.MonkeyPatch, fmt: str = "zip") -> Path:
    monkeypatch.setenv("RECORD_FILES_FTP_PASSWORD", server.password)
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "acme-motors.yaml").write_text(
        f"""client_id: acme-motors
destinations:
  - name: dms
    url: {server.url("photos")}
    password: ${{RECORD_FILES_FTP_PASSWORD}}
    allow_plain_ftp: true
package:
  format: {fmt}
"""
    )
    return folder


def _record(inbox: Path, name: str, record_id: str) -> Path:
    """A copy of sample veh-000124 (images 1.jpg, 2.jpg, 10.jpg) under another folder name and id."""
    folder = Path(shutil.copytree(SAMPLES / "veh-000124", inbox / name))
    document = json.loads((folder / "vehicle.json").read_text())
    (folder / "vehicle.json").write_text(json.dumps({**document, "id": record_id, "stock_number": record_id}))
    return folder


def test_run_never_sends_an_image_hard_linked_to_the_secrets_key_file(
    tmp_path: Path, ftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file, store = tmp_path / "keys" / "secrets.key", tmp_path / "state" / "secrets.enc"
    assert invoke("--secrets", store, "secrets", "init", "--key-file", key_file).exit_code == 0
    key = key_file.read_bytes().strip()
    rules = _rules(tmp_path, ftp_server, monkeypatch)
    inbox = tmp_path / "inbox"
    stolen = _record(inbox, "stolen", "veh-stolen")
    (stolen / "2.jpg").unlink()
    os.link(key_file, stolen / "2.jpg")  # the same file as the key, under a photo's name
    shared = tmp_path / "shared-photo.jpg"
    shutil.copy(SAMPLES / "veh-000124" / "2.jpg", shared)
    deduplicated = _record(inbox, "deduplicated", "veh-dedup")
    (deduplicated / "2.jpg").unlink()
    os.link(shared, deduplicated / "2.jpg")  # a platform that deduplicates photos with hard links
    common = ["--secrets", store, "--secrets-key-file", key_file]

    refused = invoke(*common, "run", inbox, "--rules", rules, "--state", tmp_path / "one.sqlite3", "--json")
    text = invoke(*common, "run", inbox, "--rules", rules, "--state", tmp_path / "two.sqlite3")
    allowed = invoke(*common, "run", inbox, "--rules", rules, "--state", tmp_path / "three.sqlite3", "--json",
                      "--allow-hardlinks")  # fmt: skip

    assert refused.exit_code == 1 and text.exit_code == 1 and allowed.exit_code == 1
    errors = {Path(e["path"]).name: e["reason"] for e in json.loads(refused.stdout)["record_errors"]}
    assert set(errors) == {"stolen", "deduplicated"}
    for output in (errors["stolen"], text.stdout):
        assert f"image '2.jpg' is the secrets store's key file ({key_file}): ftpexport never sends its own files" in (
            output.replace("\n", "")
        )
    assert "image '2.jpg' has 2 hard links" in errors["deduplicated"]
    assert "--allow-hardlinks" in errors["deduplicated"]
    # allowed: the deduplicated photo goes, the key still does not
    report = json.loads(allowed.stdout)
    assert [Path(e["path"]).name for e in report["record_errors"]] == ["stolen"]
    assert "the secrets store's key file" in report["record_errors"][0]["reason"]
    assert [(d["record_id"], d["result"]) for d in report["deliveries"]] == [("veh-dedup", "delivered")]
    on_server = _server_bytes(ftp_server.root)
    assert set(on_server) >= {"photos/WVWZZZAUZLW000124.zip"}
    assert shared.read_bytes() in on_server.values()
    assert not any(key in content for content in on_server.values())
    for result in (refused, text, allowed):
        assert "Traceback" not in result.output and key.decode() not in result.output


def _swap_first_image(content: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def swap(folder: Path) -> None:
        image = folder / "1.jpg"
        fresh = folder / ".1.jpg.new"
        fresh.write_bytes(content(image.read_bytes()))
        fresh.replace(image)  # another file in its place, as a platform rewriting a photo does

    return swap


@pytest.mark.parametrize(
    "fmt, when",
    [
        ("zip", "before the zip is built"),
        ("zip", "after the package is built, before the upload"),  # one destination: the zip is streamed
        ("files", "after the package is built, before the upload"),
    ],
)
@pytest.mark.parametrize(
    "new_content", [lambda old: old, lambda old: old + b"retouched"], ids=["same bytes", "new bytes"]
)
def test_an_image_replaced_after_the_record_was_read_is_deferred_and_read_again(
    tmp_path: Path,
    ftp_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    when: str,
    new_content: Callable[[bytes], bytes],
) -> None:
    rules = _rules(tmp_path, ftp_server, monkeypatch, fmt)
    folder = _record(tmp_path / "inbox", "veh-000124", "veh-000124")
    state = tmp_path / "ledger.sqlite3"
    swap = _swap_first_image(new_content)
    real = pipeline.make_package

    def make_package(plan: Any, workdir: Path) -> Package:
        if when.startswith("before"):
            swap(folder)
            return real(plan, workdir)
        package = real(plan, workdir)
        swap(folder)
        return package

    monkeypatch.setattr(pipeline, "make_package", make_package)
    first = invoke("run", folder.parent, "--rules", rules, "--state", state, "--json")
    monkeypatch.setattr(pipeline, "make_package", real)
    sent_first = _server_bytes(ftp_server.root)
    with open_ledger(state) as ledger:
        after_first = [(d.status, d.last_error) for d in ledger.deliveries()]
    second = invoke("run", folder.parent, "--rules", rules, "--state", state, "--json")

    assert first.exit_code == 1, first.output
    (outcome,) = json.loads(first.stdout)["deliveries"]
    assert outcome["result"] == "deferred"
    assert "image '1.jpg' changed after it was read (another file is in its place)" in outcome["error"]
    assert "the record will be read again" in outcome["error"]
    assert sent_first == {}  # nothing that was not checked went out
    ((status, error),) = after_first
    assert status == "pending" and error == outcome["error"]  # not parked: the next run reads the record again
    assert second.exit_code == 0, second.output
    assert [d["result"] for d in json.loads(second.stdout)["deliveries"]] == ["delivered"]
    assert (folder / "1.jpg").read_bytes() in _server_bytes(ftp_server.root).values()
    with open_ledger(state) as ledger:
        statuses = sorted(d.status for d in ledger.deliveries())
    same = new_content(b"x") == b"x"
    # the same bytes: the same delivery, pending then delivered; new bytes: a new version, the old one superseded
    assert statuses == (["delivered"] if same else ["delivered", "superseded"])


def test_watch_reads_again_a_record_whose_image_changed_after_it_was_read(
    tmp_path: Path, ftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = _rules(tmp_path, ftp_server, monkeypatch)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    swap = _swap_first_image(lambda old: old + b"retouched")
    real = pipeline.make_package
    swapped: list[Path] = []

    def make_package(plan: Any, workdir: Path) -> Package:
        if not swapped:  # once: the platform rewrites a photo just after the record was read
            swapped.append(plan.record.folder)
            swap(plan.record.folder)
        return real(plan, workdir)

    monkeypatch.setattr(pipeline, "make_package", make_package)
    ledger = open_ledger(tmp_path / "ledger.sqlite3")
    summary = Summary()
    stop = threading.Event()
    exporter = Exporter(load_rules(rules), ledger, Options(jobs=2, retries=0))
    watcher = InboxWatcher(
        inbox,
        lambda folders: exporter.submit(folders, summary),
        stop=stop,
        settle=0.3,
        rescan_every=3600,
        housekeeping=exporter.pending_folders,  # as `ftpexport watch` does
        housekeeping_every=0.2,
    )
    thread = threading.Thread(target=watcher.run, name="watcher")
    thread.start()
    try:
        staged = _record(tmp_path / "staging", "veh-000124", "veh-000124")
        folder = Path(staged.rename(inbox / staged.name))  # the whole record at once: read once
        eventually(lambda: bool(ledger.deliveries(status="delivered")), "the delivery of the record read again")
    finally:
        stop.set()
        thread.join(timeout=10)
        exporter.close()
    statuses = sorted(d.status for d in ledger.deliveries())
    ledger.close()

    assert not thread.is_alive()
    assert swapped == [folder]
    assert [o.result for o in summary.outcomes] == ["deferred", "delivered"]
    assert "changed after it was read" in (summary.outcomes[0].error or "")
    assert statuses == ["delivered", "superseded"]  # the version read first, then the one read again
    assert (folder / "1.jpg").read_bytes() in _server_bytes(ftp_server.root).values()
    assert summary.record_errors == []


def test_a_version_replaced_while_its_attempt_runs_ends_superseded_not_pending(
    tmp_path: Path, ftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The platform rewrites a photo and then vehicle.json while the first version is being packaged:
    # the new version is read (its delivery supersedes the first) before the first one's attempt ends.
    rules = _rules(tmp_path, ftp_server, monkeypatch)
    folder = _record(tmp_path / "inbox", "veh-000124", "veh-000124")
    real = pipeline.make_package
    rewritten: list[bool] = []

    def make_package(plan: Any, workdir: Path) -> Package:
        if not rewritten:
            rewritten.append(True)
            _swap_first_image(lambda old: old + b"retouched")(folder)
            document = json.loads((folder / "vehicle.json").read_text())
            (folder / "vehicle.json").write_text(json.dumps({**document, "stock_number": "A-2"}))
            exporter.submit([folder], summary)  # what the watcher does on the vehicle.json event
        return real(plan, workdir)

    monkeypatch.setattr(pipeline, "make_package", make_package)
    ledger = open_ledger(tmp_path / "ledger.sqlite3")
    summary = Summary()
    exporter = Exporter(load_rules(rules), ledger, Options(jobs=2, retries=0))
    try:
        exporter.export([folder])
        versions = {d.content_hash: d.status for d in ledger.deliveries()}
        pending = exporter.pending_folders()
    finally:
        exporter.close()
        ledger.close()

    assert sorted(versions.values()) == ["delivered", "superseded"]
    assert pending == []  # nothing left for watch to read again every few seconds


class _SwapOnSecondRead(io.RawIOBase):
    """The upload's stream, with a photo of the record replaced once the transfer is under way."""

    def __init__(self, inner: BinaryIO, swap: Callable[[], None]) -> None:
        super().__init__()
        self.inner, self.swap, self.reads = inner, swap, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.reads += 1
        if self.reads == 2:
            self.swap()
        return self.inner.readinto(buffer)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.inner.close()
        super().close()


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
def test_an_image_replaced_while_the_zip_is_streamed_leaves_no_zip_and_is_sent_again(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    # One destination, atomic uploads: the zip is read from the images while it is sent, not from
    # the spool. A photo replaced half way through fails the transfer before the rename.
    server: RunningServer = request.getfixturevalue(f"{protocol}_server")
    if protocol == "ftp":
        rules = _rules(tmp_path, server, monkeypatch)
    else:
        rules = tmp_path / "rules"
        write_rules(rules, rule_document("acme-motors", [sftp_destination("dms", server, "photos")],
                                         package={"format": "zip"}))  # fmt: skip
    folder = _record(tmp_path / "inbox", "veh-000124", "veh-000124")
    (folder / "1.jpg").write_bytes(b"\xff\xd8" + os.urandom(600_000) + b"\xff\xd9")  # over one block of the upload
    state = tmp_path / "ledger.sqlite3"
    real = pipeline.make_package

    def make_package(plan: Any, workdir: Path) -> Package:
        package = real(plan, workdir)
        (artifact,) = package.files
        assert not list(workdir.iterdir())  # streamed: nothing in the spool
        swap = functools.partial(_swap_last_image, folder)
        opened = dataclasses.replace(artifact, opener=lambda: _SwapOnSecondRead(artifact.open(), swap))
        return dataclasses.replace(package, files=(opened,))

    monkeypatch.setattr(pipeline, "make_package", make_package)
    first = invoke("run", folder.parent, "--rules", rules, "--state", state, "--json")
    monkeypatch.setattr(pipeline, "make_package", real)
    on_server_first = {name for name in _server_bytes(server.root) if ":" not in name}
    second = invoke("run", folder.parent, "--rules", rules, "--state", state, "--json")

    assert first.exit_code == 1, first.output
    (outcome,) = json.loads(first.stdout)["deliveries"]
    assert outcome["result"] == "deferred"
    assert "image '10.jpg' changed after it was read (another file is in its place)" in outcome["error"]
    assert "Traceback" not in first.output
    assert on_server_first <= {"photos/.WVWZZZAUZLW000124.zip.part"}  # at most the hidden temporary file
    assert second.exit_code == 0, second.output
    assert [d["result"] for d in json.loads(second.stdout)["deliveries"]] == ["delivered"]
    on_server = _server_bytes(server.root)
    assert "photos/WVWZZZAUZLW000124.zip" in on_server
    assert (folder / "10.jpg").read_bytes() in on_server.values()  # the photo as it is now


def _swap_last_image(folder: Path) -> None:
    fresh = folder / ".10.jpg.new"
    fresh.write_bytes((folder / "10.jpg").read_bytes() + b"retouched")
    fresh.replace(folder / "10.jpg")

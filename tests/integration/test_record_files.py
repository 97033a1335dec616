"""Only a record's own regular files reach the server, with the real ``run`` command and a real FTP server.

- an image hard-linked to the secrets store's key file is refused, named, and nothing of it is sent,
  with or without ``--allow-hardlinks``; an ordinary hard link is refused unless it is allowed.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from servers import RunningServer

from ftpexport.cli import cli
from ftpexport.vault import KEY_ENV, KEY_FILE_ENV, STORE_ENV

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


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
    assert _invoke("--secrets", store, "secrets", "init", "--key-file", key_file).exit_code == 0
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

    refused = _invoke(*common, "run", inbox, "--rules", rules, "--state", tmp_path / "one.sqlite3", "--json")
    text = _invoke(*common, "run", inbox, "--rules", rules, "--state", tmp_path / "two.sqlite3")
    allowed = _invoke(*common, "run", inbox, "--rules", rules, "--state", tmp_path / "three.sqlite3", "--json",
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

"""End to end: ``ftpexport run`` delivers the sample inbox to real SFTP, FTPS and FTP servers."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cli_runner import invoke
from click.testing import Result
from rulefiles import ftp_destination, rule_document, sftp_destination, write_rules
from servers import RunningServer

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _report(result: Result) -> dict[str, Any]:
    return json.loads(result.stdout)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    target = tmp_path / "inbox"
    shutil.copytree(SAMPLES, target)
    return target


@pytest.fixture
def rules(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sftp_server: RunningServer,
    ftps_server: RunningServer,
    ftp_server: RunningServer,
) -> Path:
    """acme-motors: zip to SFTP + FTPS, user u-42 to their own plain FTP; bravo-cars: loose files over SFTP."""
    monkeypatch.setenv("E2E_SFTP_PASSWORD", sftp_server.password)
    monkeypatch.setenv("E2E_FTPS_PASSWORD", ftps_server.password)
    monkeypatch.setenv("E2E_FTP_PASSWORD", ftp_server.password)
    folder = tmp_path / "rules"
    sftp_dms = sftp_destination(
        "dms", sftp_server, "dms", password_env="E2E_SFTP_PASSWORD", remote_dir="{{ processed_at[:10] }}"
    )
    tls = {
        "name": "tls",
        "url": ftps_server.url("photos"),
        "password": "${E2E_FTPS_PASSWORD}",
        "ca_file": str(ftps_server.ca_file),
    }
    own = ftp_destination("own", ftp_server, "u42", "E2E_FTP_PASSWORD")
    write_rules(folder, rule_document("acme-motors", [sftp_dms, tls], users={"u-42": {"destinations": [own]}}))
    package = {
        "format": "files",
        "image_name": "{{ vin }}-{{ n }}.{{ ext }}",
        "metadata": {"name": "{{ vin }}.json", "fields": ["id", "vin", "user.name", "extra.branch"]},
        "done_marker": "{{ vin }}.done",
    }
    bravo = sftp_destination("dms", sftp_server, "bravo", remote_dir="{{ stock_number | safe_name }}")
    write_rules(folder, rule_document("bravo-cars", [bravo], package=package))
    return folder


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_run_delivers_samples_to_sftp_ftps_and_ftp(
    inbox: Path,
    rules: Path,
    tmp_path: Path,
    sftp_server: RunningServer,
    ftps_server: RunningServer,
    ftp_server: RunningServer,
) -> None:
    state = tmp_path / "state" / "ledger.sqlite3"
    result = invoke("run", inbox, "--rules", rules, "--state", state, "--json")
    assert result.exit_code == 0, result.output
    report = _report(result)
    assert (report["delivered"], report["failed"], report["record_errors"]) == (4, 0, [])

    # veh-000124 (user u-7): the client's two destinations, one zip each.
    assert _files(sftp_server.root) >= {"dms/2026-11-20/WVWZZZAUZLW000124.zip"}
    assert _files(ftps_server.root) == {"photos/WVWZZZAUZLW000124.zip"}
    # veh-000123 (user u-42): only the user's own server.
    assert _files(ftp_server.root) == {"u42/WVWZZZ1JZXW000001.zip"}
    assert not any("WVWZZZ1JZXW000001" in name for name in _files(sftp_server.root) | _files(ftps_server.root))

    with zipfile.ZipFile(sftp_server.root / "dms/2026-11-20/WVWZZZAUZLW000124.zip") as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == [
            "wvwzzzauzlw000124_01.jpg",
            "wvwzzzauzlw000124_02.jpg",
            "wvwzzzauzlw000124_03.jpg",
            "WVWZZZAUZLW000124.json",
        ]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        # natural order of a record without an images list: 1.jpg, 2.jpg, 10.jpg
        for name, source in zip(archive.namelist(), ["1.jpg", "2.jpg", "10.jpg"], strict=False):
            assert archive.read(name) == (inbox / "veh-000124" / source).read_bytes()
        metadata = json.loads(archive.read("WVWZZZAUZLW000124.json"))
    assert metadata["vin"] == "WVWZZZAUZLW000124"
    assert metadata["user"] == {"name": "Marc Lefèvre"}
    assert metadata["files"][0] == "wvwzzzauzlw000124_01.jpg"
    # the same bytes at both destinations
    assert (ftps_server.root / "photos/WVWZZZAUZLW000124.zip").read_bytes() == (
        sftp_server.root / "dms/2026-11-20/WVWZZZAUZLW000124.zip"
    ).read_bytes()

    # bravo-cars: loose files in a folder per stock number, done marker included, no temp file left.
    bravo = {name for name in _files(sftp_server.root) if name.startswith("bravo/")}
    assert bravo == {
        "bravo/B-77/VF3MCYHZRKS000201-1.jpg",
        "bravo/B-77/VF3MCYHZRKS000201-2.jpg",
        "bravo/B-77/VF3MCYHZRKS000201-3.png",
        "bravo/B-77/VF3MCYHZRKS000201-4.jpg",
        "bravo/B-77/VF3MCYHZRKS000201.json",
        "bravo/B-77/VF3MCYHZRKS000201.done",
    }
    assert (sftp_server.root / "bravo/B-77/VF3MCYHZRKS000201-3.png").read_bytes() == (
        inbox / "veh-000201" / "rear.png"
    ).read_bytes()
    assert json.loads((sftp_server.root / "bravo/B-77/VF3MCYHZRKS000201.json").read_text())["extra"] == {
        "branch": "Lyon"
    }

    # the ledger has each delivery with its remote paths and bytes
    with sqlite3.connect(state) as db:
        rows = db.execute(
            "SELECT destination, status, remote_paths, bytes FROM deliveries ORDER BY destination"
        ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        ("acme-motors/dms", "delivered"),
        ("acme-motors/tls", "delivered"),
        ("acme-motors/users/u-42/own", "delivered"),
        ("bravo-cars/dms", "delivered"),
    ]
    assert json.loads(rows[2][2]) == ["u42/WVWZZZ1JZXW000001.zip"]
    assert rows[2][3] == (ftp_server.root / "u42/WVWZZZ1JZXW000001.zip").stat().st_size


def test_second_run_sends_nothing_and_a_changed_image_resends_that_record_only(
    inbox: Path, rules: Path, tmp_path: Path, sftp_server: RunningServer, ftps_server: RunningServer
) -> None:
    state = tmp_path / "ledger.sqlite3"
    assert invoke("run", inbox, "--rules", rules, "--state", state).exit_code == 0
    # Remove what arrived: if the second run uploaded anything, it would reappear.
    sftp_server.clear_root()
    ftps_server.clear_root()

    again = _report(invoke("run", inbox, "--rules", rules, "--state", state, "--json"))
    assert (again["delivered"], again["unchanged"], again["failed"]) == (0, 4, 0)
    assert _files(sftp_server.root) == set() and _files(ftps_server.root) == set()

    image = inbox / "veh-000124" / "2.jpg"
    image.write_bytes(image.read_bytes() + b"\x00retouched")
    changed = _report(invoke("run", inbox, "--rules", rules, "--state", state, "--json"))
    assert (changed["delivered"], changed["unchanged"], changed["failed"]) == (2, 2, 0)
    assert {d["record_id"] for d in changed["deliveries"] if d["result"] == "delivered"} == {"veh-000124"}
    assert _files(ftps_server.root) == {"photos/WVWZZZAUZLW000124.zip"}
    assert _files(sftp_server.root) == {"dms/2026-11-20/WVWZZZAUZLW000124.zip"}
    with zipfile.ZipFile(ftps_server.root / "photos/WVWZZZAUZLW000124.zip") as archive:
        assert archive.read("wvwzzzauzlw000124_02.jpg") == image.read_bytes()


def _another_host_key(tmp_path: Path) -> str:
    key = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


def test_wrong_host_key_is_refused_and_other_destinations_still_get_the_record(
    inbox: Path, rules: Path, tmp_path: Path, sftp_server: RunningServer, ftps_server: RunningServer
) -> None:
    acme = rules / "acme-motors.yaml"
    acme.write_text(acme.read_text().replace(sftp_server.host_key or "", _another_host_key(tmp_path)))
    (rules / "bravo-cars.yaml").unlink()
    shutil.rmtree(inbox / "veh-000201")
    state = tmp_path / "ledger.sqlite3"

    result = invoke("run", inbox, "--rules", rules, "--state", state, "--json", "--retries", "0")
    assert result.exit_code == 1
    report = _report(result)
    failed = [d for d in report["deliveries"] if d["result"] == "failed"]
    assert [d["destination"] for d in failed] == ["acme-motors/dms"]
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", "-"], input=sftp_server.host_key, capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert "host key" in failed[0]["error"] and fingerprint in failed[0]["error"]
    assert _files(sftp_server.root) == set()
    assert _files(ftps_server.root) == {"photos/WVWZZZAUZLW000124.zip"}

    status = json.loads(invoke("status", "--state", state, "--json", "--failed").stdout)
    assert [(d["destination"], d["status"]) for d in status["deliveries"]] == [("acme-motors/dms", "failed")]
    assert fingerprint in status["deliveries"][0]["last_error"]


def test_no_password_appears_in_any_output_on_success_or_failure(
    inbox: Path,
    rules: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ftps_server: RunningServer,
    ftp_server: RunningServer,
) -> None:
    wrong = "Wr0ng-" + os.urandom(8).hex()  # a login that fails, at the SFTP server
    monkeypatch.setenv("E2E_SFTP_PASSWORD", wrong)
    log_file = tmp_path / "log.jsonl"
    state = tmp_path / "ledger.sqlite3"
    outputs = []
    result = invoke(
        "-vv", "--log-format", "json", "--log-file", log_file,
        "run", inbox, "--rules", rules, "--state", state, "--json", "--retries", "0",
    )  # fmt: skip
    assert result.exit_code == 1
    outputs += [result.stdout, result.stderr]
    failed = [d for d in _report(result)["deliveries"] if d["result"] == "failed"]
    assert [d["destination"] for d in failed] == ["acme-motors/dms"]  # bravo-cars logs in with a key
    assert "authentication" in failed[0]["error"].lower() or "login" in failed[0]["error"].lower()
    text_run = invoke("-vv", "run", inbox, "--rules", rules, "--state", tmp_path / "other.sqlite3", "--retries", "0")
    outputs += [text_run.stdout, text_run.stderr]
    outputs.append(invoke("status", "--state", state, "--json").stdout)
    outputs.append(log_file.read_text())
    outputs.append(state.read_bytes().decode("utf-8", "replace"))
    assert len(log_file.read_text().splitlines()) >= 4
    for line in log_file.read_text().splitlines():
        json.loads(line)  # one JSON object a line
    for secret in (wrong, ftps_server.password, ftp_server.password):
        for output in outputs:
            assert secret not in output


def test_broken_records_are_reported_and_the_others_delivered(
    inbox: Path, rules: Path, tmp_path: Path, ftp_server: RunningServer
) -> None:
    good = json.loads((inbox / "veh-000123" / "vehicle.json").read_text())

    def broken(name: str, change: dict[str, Any] | None = None, raw: str | None = None) -> Path:
        folder = inbox / name
        shutil.copytree(inbox / "veh-000123", folder)
        text = raw if raw is not None else json.dumps({**good, "id": name, **(change or {})})
        (folder / "vehicle.json").write_text(text)
        return folder

    broken("bad-json", raw='{"id": "x", ')
    broken("no-vin", raw=json.dumps({k: v for k, v in good.items() if k != "vin"}))
    broken("bad-vin", {"vin": "WVWZZZ1JZXW00000I"})
    broken("missing-image", {"images": ["01.jpg", "99.jpg"]})
    escape = broken("escaping-link")
    (escape / "02.jpg").unlink()
    (escape / "02.jpg").symlink_to("/etc/hostname")
    broken("unknown-client", {"client_id": "zulu-cars"})
    (inbox / "still-copying").mkdir()
    (inbox / "still-copying" / "01.jpg").write_bytes(b"\xff\xd8")

    result = invoke("run", inbox, "--rules", rules, "--state", tmp_path / "l.sqlite3", "--json", "--retries", "0")
    assert result.exit_code == 1
    report = _report(result)
    reasons = {Path(e["path"]).name: e["reason"] for e in report["record_errors"]}
    assert set(reasons) == {"bad-json", "no-vin", "bad-vin", "missing-image", "escaping-link", "unknown-client"}
    assert "not valid JSON" in reasons["bad-json"]
    assert "vin" in reasons["no-vin"] and "Field required" in reasons["no-vin"]
    assert "17 characters" in reasons["bad-vin"]
    assert "99.jpg" in reasons["missing-image"] and "missing" in reasons["missing-image"]
    assert "outside the record folder" in reasons["escaping-link"]
    assert "zulu-cars" in reasons["unknown-client"] and "no rule file" in reasons["unknown-client"]
    for name, reason in reasons.items():
        assert str(inbox / name) in reason
    assert report["incomplete"] == [str(inbox / "still-copying")]
    # the good records went through all the same
    assert report["delivered"] == 4
    assert (ftp_server.root / "u42/WVWZZZ1JZXW000001.zip").is_file()

    text = invoke("run", inbox, "--rules", rules, "--state", tmp_path / "l.sqlite3")
    assert "record refused:" in text.stdout and "escaping-link" in text.stdout
    assert "Traceback" not in text.output


def test_configuration_errors_exit_2_with_a_clear_message(tmp_path: Path, inbox: Path) -> None:
    missing = invoke("run", inbox, "--rules", tmp_path / "nowhere", "--state", tmp_path / "l.sqlite3")
    assert missing.exit_code == 2
    assert "rules folder does not exist" in missing.stderr and "Traceback" not in missing.output
    no_inbox = invoke("run", tmp_path / "no-inbox", "--rules", tmp_path, "--state", tmp_path / "l.sqlite3")
    assert no_inbox.exit_code == 2 and "inbox folder does not exist" in no_inbox.stderr

"""The protocol transcript of each attempt (issue 15, item 4), against real FTP, FTPS and SFTP servers.

A failed attempt's transcript shows the command the server refused (a rename on Pure-FTPd
``--norename`` and on OpenSSH ``-P rename,posix-rename``, a login on vsftpd over TLS); a delivered
one shows TLS on both channels and the bytes sent; a reused connection records into the attempt
using it; ``history`` marks the attempts that keep one; and no transcript, nor ``ftpexport
transcript``'s output (text or JSON), holds any secret a destination used.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_runner import invoke
from rulefiles import ftp_destination, rule_document, sftp_destination, write_rules
from servers import RunningServer

from ftpexport.ledger import open_ledger
from ftpexport.transport import open_transport, upload_file
from ftpexport.transport.transcript import Recorder, recording

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
#: veh-000201: client bravo-cars, zip VF3MCYHZRKS000201.zip
RECORD = "veh-000201"
ZIP = "VF3MCYHZRKS000201.zip"


def _inbox(tmp_path: Path, records: int) -> Path:
    """The sample record of bravo-cars, and ``records - 1`` copies of it with other ids and VINs."""
    inbox = tmp_path / "inbox"
    shutil.copytree(SAMPLES / RECORD, inbox / RECORD)
    for number in range(2, records + 1):
        copy = inbox / f"veh-00020{number}"
        shutil.copytree(SAMPLES / RECORD, copy)
        vehicle = json.loads((copy / "vehicle.json").read_text())
        vehicle.update(id=copy.name, vin=f"VF3MCYHZRKS00020{number}")
        (copy / "vehicle.json").write_text(json.dumps(vehicle))
    return inbox


def _run(tmp_path: Path, destinations: list[dict[str, Any]], *options: str, records: int = 1) -> Path:
    """``ftpexport run`` of the sample record (and copies) for bravo-cars to ``destinations``; the ledger."""
    rules = tmp_path / "rules"
    write_rules(rules, rule_document("bravo-cars", destinations))
    state = tmp_path / "ledger.sqlite3"
    result = invoke("run", _inbox(tmp_path, records), "--rules", rules, "--state", state, "--retries", "0",
                    "--backoff", "0.01", *options)  # fmt: skip
    assert "Traceback" not in result.output
    return state


def _attempts(state: Path) -> list[dict[str, Any]]:
    with open_ledger(state) as ledger:
        return list(ledger.history())


def _transcript(state: Path, correlation_id: str) -> tuple[str, dict[str, Any]]:
    """``ftpexport transcript`` of ``correlation_id``: its text and its --json document."""
    text = invoke("transcript", correlation_id, "--state", state)
    document = invoke("transcript", correlation_id, "--state", state, "--json")
    assert text.exit_code == 0, text.output
    assert document.exit_code == 0, document.output
    return text.stdout, json.loads(document.stdout)


def _lines(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["kind"], e["text"]) for attempt in document["attempts"] for e in attempt["entries"]]


def _followed_by(lines: list[tuple[str, str]], sent: str, reply_kind: str) -> str:
    """The reply that came after the first entry sent that starts with ``sent``."""
    for index, (kind, text) in enumerate(lines):
        if kind in ("send", "request") and text.startswith(sent):
            return next(t for k, t in lines[index + 1 :] if k == reply_kind)
    raise AssertionError(f"{sent!r} was not sent: {lines}")


# --- a failed attempt shows the refused command


def test_a_rename_refused_by_pure_ftpd_is_in_the_transcript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pureftpd_norename_server: RunningServer
) -> None:
    monkeypatch.setenv("T_FTP_PASSWORD", pureftpd_norename_server.password)
    state = _run(tmp_path, [ftp_destination("dms", pureftpd_norename_server, "dms", "T_FTP_PASSWORD")])

    [attempt] = _attempts(state)
    text, document = _transcript(state, attempt["correlation_id"])

    assert attempt["result"] == "failed" and attempt["transcript"] is True
    lines = _lines(document)
    assert _followed_by(lines, f"RNFR dms/.{ZIP}.part", "reply").startswith("5")  # the refusal, as the server said it
    assert ("send", "PASS ********") in lines
    assert lines[-1][0] == "error" and f"the server refused to rename .{ZIP}.part to {ZIP}" in lines[-1][1]
    assert f"> RNFR dms/.{ZIP}.part" in text
    assert "the server refused to rename" in text.splitlines()[1]  # the attempt's heading: its error


def test_a_rename_refused_by_openssh_is_in_the_transcript(
    tmp_path: Path, sftp_norename_server: RunningServer
) -> None:
    state = _run(tmp_path, [sftp_destination("dms", sftp_norename_server, "dms")])

    [attempt] = _attempts(state)
    text, document = _transcript(state, attempt["correlation_id"])

    assert attempt["result"] == "failed"
    lines = _lines(document)
    part, final = sftp_norename_server.remote_path(f"dms/.{ZIP}.part"), sftp_norename_server.remote_path(f"dms/{ZIP}")
    # this server lists no posix-rename@openssh.com (sftp-server -P): only the plain RENAME is asked
    assert not any("posix-rename" in t for k, t in lines if k == "request")
    assert "PERMISSION_DENIED" in _followed_by(lines, f"RENAME {part} -> {final}", "status")
    # the SSH side: banner, host key, algorithms, the SFTP version, the bytes written
    info = "\n".join(t for k, t in lines if k in ("info", "status", "data"))
    assert "server banner SSH-2.0-OpenSSH" in info and "SHA256:" in info and "cipher" in info
    assert "SFTP version 3; extensions:" in info and "fsync@openssh.com" in info
    assert f"{_zip_size(document)} bytes written to {part}" in info
    assert f"> RENAME {part} -> {final}" in text


def _zip_size(document: dict[str, Any]) -> int:
    """The zip's size as the server's FSTAT answered it after the writes."""
    fstat = next(t for k, t in _lines(document) if k == "status" and t.startswith("FSTAT"))
    return int(fstat.split("size ")[1].split(",")[0])


def test_a_login_refused_over_tls_is_in_the_transcript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vsftpd_ftps_server: RunningServer
) -> None:
    wrong = "not-the-Password-8731"
    monkeypatch.setenv("T_FTPS_PASSWORD", wrong)
    destination = {"name": "dms", "url": vsftpd_ftps_server.url("dms"), "password": "${T_FTPS_PASSWORD}",
                   "ca_file": str(vsftpd_ftps_server.ca_file)}  # fmt: skip
    state = _run(tmp_path, [destination])

    [attempt] = _attempts(state)
    text, document = _transcript(state, attempt["correlation_id"])

    lines = _lines(document)
    assert _followed_by(lines, "AUTH TLS", "reply").startswith("234")
    assert any(k == "tls" and t.startswith("TLS on the control connection: TLSv1.") for k, t in lines)
    assert _followed_by(lines, "PASS ********", "reply").startswith("530")
    assert lines[0] == ("info", f"connecting to 127.0.0.1:{vsftpd_ftps_server.port} (ftps) as "
                                f"{vsftpd_ftps_server.username}")  # fmt: skip
    assert any(k == "reply" and t.startswith("220") for k, t in lines)  # the banner
    assert wrong not in text and wrong not in json.dumps(document)


# --- every server of the conformance matrix


def test_every_server_of_the_matrix_gives_a_transcript_of_its_session(any_server: RunningServer) -> None:
    data = b"z" * 70_000  # more than one SFTP write request
    recorder = Recorder()
    with recording(recorder), open_transport(any_server.endpoint()) as transport:
        upload_file(transport, lambda: io.BytesIO(data), len(data), any_server.remote_path(),  # type: ignore[arg-type]
                    "VIN123.zip", atomic=any_server.renames)  # fmt: skip

    lines = [(e["kind"], e["text"]) for e in recorder.entries()]
    texts = "\n".join(t for _, t in lines)
    assert lines[0] == ("info", f"connecting to 127.0.0.1:{any_server.port} ({any_server.scheme}) as "
                                f"{any_server.username}")  # fmt: skip
    assert any_server.password not in texts
    if any_server.scheme == "sftp":
        assert "server banner SSH-2.0-OpenSSH" in texts and "SFTP version 3" in texts
        assert f"{len(data)} bytes written to " in texts and " in 3 WRITE requests" in texts
        return
    assert next(t for k, t in lines if k == "reply").startswith("220")  # the banner (after TLS if implicit)
    assert ("send", "PASS ********") in lines
    assert ("data", f"{len(data)} bytes sent on the data connection") in lines
    if any_server.scheme != "ftp":
        assert any(k == "tls" and t.startswith("TLS on the control connection: TLSv1.") for k, t in lines)
        assert any(k == "tls" and t.startswith("TLS on the data connection: TLSv1.") for k, t in lines)
    if any_server.scheme == "ftps":
        assert ("send", "AUTH TLS") in lines and ("send", "PROT P") in lines


# --- a delivered attempt


def test_a_delivery_over_ftps_shows_tls_on_both_channels_and_the_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vsftpd_ftps_server: RunningServer
) -> None:
    monkeypatch.setenv("T_FTPS_PASSWORD", vsftpd_ftps_server.password)
    destination = {"name": "dms", "url": vsftpd_ftps_server.url("dms"), "password": "${T_FTPS_PASSWORD}",
                   "ca_file": str(vsftpd_ftps_server.ca_file)}  # fmt: skip
    state = _run(tmp_path, [destination])

    [attempt] = _attempts(state)
    _, document = _transcript(state, attempt["correlation_id"])
    history_text = invoke("history", "--state", state).stdout
    history_json = json.loads(invoke("history", "--state", state, "--json").stdout)

    assert attempt["result"] == "delivered"
    lines = _lines(document)
    size = (vsftpd_ftps_server.root / "dms" / ZIP).stat().st_size
    assert ("data", f"{size} bytes sent on the data connection") in lines
    assert any(k == "tls" and "data connection" in t and "session reused: yes" in t for k, t in lines)
    assert _followed_by(lines, f"STOR dms/.{ZIP}.part", "reply").startswith("150")
    # RNFR and RNTO go in one write (one round trip), their replies follow in order
    rename = lines.index(("send", f"RNFR dms/.{ZIP}.part"))
    assert [kind for kind, _ in lines[rename : rename + 4]] == ["send", "send", "reply", "reply"]
    assert lines[rename + 1] == ("send", f"RNTO dms/{ZIP}")
    assert lines[rename + 2][1].startswith("350") and lines[rename + 3][1].startswith("250")
    assert [e["ms"] for e in document["attempts"][0]["entries"]] == sorted(
        e["ms"] for e in document["attempts"][0]["entries"]
    )
    assert [a["transcript"] for a in history_json["attempts"]] == [True]
    assert attempt["correlation_id"] in history_text and "ftpexport transcript CORRELATION_ID" in history_text


def test_a_reused_connection_records_into_the_attempt_that_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer
) -> None:
    monkeypatch.setenv("T_FTP_PASSWORD", ftp_server.password)
    destination = ftp_destination("dms", ftp_server, "dms", "T_FTP_PASSWORD", max_connections=1)
    state = _run(tmp_path, [destination], "--jobs", "1", records=2)

    first, second = _attempts(state)
    transcripts = [_lines(_transcript(state, a["correlation_id"])[1]) for a in (first, second)]

    assert first["result"] == second["result"] == "delivered"
    opened, reused = transcripts
    assert opened[0][1].startswith("connecting to ") and any(t == "PASS ********" for _, t in opened)
    assert reused[0][1].startswith("reusing the open connection to 127.0.0.1")
    assert not any(t.startswith(("USER", "PASS")) for _, t in reused)  # no second login
    for lines, attempt in ((opened, first), (reused, second)):
        [name] = [Path(p).name for p in attempt["remote_paths"]]
        stored = [t for k, t in lines if k == "send" and t.startswith("STOR")]
        assert stored == [f"STOR dms/.{name}.part"]  # its own upload, not the other's


def test_closing_another_destination_s_idle_connection_is_not_in_the_attempt_s_transcript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer
) -> None:
    monkeypatch.setenv("T_FTP_PASSWORD", ftp_server.password)
    destinations = [ftp_destination(name, ftp_server, name, "T_FTP_PASSWORD") for name in ("first", "second")]
    # one job: the second destination's attempt closes the first's idle connection to make room
    state = _run(tmp_path, destinations, "--jobs", "1")

    attempts = _attempts(state)
    transcripts = {a["destination"]: _lines(_transcript(state, a["correlation_id"])[1]) for a in attempts}

    assert [a["result"] for a in attempts] == ["delivered", "delivered"]
    for destination, lines in transcripts.items():
        folder = destination.split("/")[1]
        assert not any(k == "send" and t == "QUIT" for k, t in lines), destination
        assert all(folder in t for k, t in lines if k == "send" and t.startswith(("STOR", "RNTO", "MKD"))), lines


# --- no secret in any transcript


def _encrypted_copy(key_file: Path, passphrase: str, tmp_path: Path) -> str:
    copy = tmp_path / "encrypted_key"
    shutil.copy(key_file, copy)
    copy.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", passphrase, "-f", str(copy)], check=True,
                   capture_output=True)  # fmt: skip
    return copy.read_text()


def test_no_transcript_nor_its_output_holds_a_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ftps_server: RunningServer,
    ftp_server: RunningServer,
    sftp_server: RunningServer,
) -> None:
    assert sftp_server.client_key_file is not None
    passphrase = "key-Passphrase-4471"
    key_text = _encrypted_copy(sftp_server.client_key_file, passphrase, tmp_path)
    wrong = "wrong-Password-5512"
    used = {"T_FTPS_PASSWORD": ftps_server.password, "T_FTP_WRONG": wrong, "T_SFTP_PASSWORD": sftp_server.password,
            "T_SFTP_KEY": key_text, "T_SFTP_PASSPHRASE": passphrase}  # fmt: skip
    for name, value in used.items():
        monkeypatch.setenv(name, value)
    destinations = [
        {"name": "tls", "url": ftps_server.url("tls"), "password": "${T_FTPS_PASSWORD}",
         "ca_file": str(ftps_server.ca_file)},
        ftp_destination("refused", ftp_server, "refused", "T_FTP_WRONG"),
        sftp_destination("by-key", sftp_server, "by-key", private_key="${T_SFTP_KEY}",
                         key_passphrase="${T_SFTP_PASSPHRASE}"),
        sftp_destination("by-password", sftp_server, "by-password", password_env="T_SFTP_PASSWORD"),
    ]  # fmt: skip
    destinations[2].pop("key_file")
    state = _run(tmp_path, destinations)

    attempts = _attempts(state)
    with sqlite3.connect(state) as db:
        stored = [row[0] for row in db.execute("SELECT entries FROM transcripts")]
    outputs = []
    for correlation_id in {a["correlation_id"] for a in attempts}:
        text, document = _transcript(state, correlation_id)
        outputs += [text, json.dumps(document)]

    assert sorted((a["destination"], a["result"]) for a in attempts) == [
        ("bravo-cars/by-key", "delivered"), ("bravo-cars/by-password", "delivered"),
        ("bravo-cars/refused", "failed"), ("bravo-cars/tls", "delivered"),
    ]  # fmt: skip
    secrets = [*used.values(), *(line for line in key_text.splitlines() if len(line) >= 8)]
    for secret in secrets:
        for where, text in [*(("ledger", s) for s in stored), *(("output", o) for o in outputs)]:
            assert secret not in text, f"a secret in the {where}"
    assert len(stored) == 4 and sum("PASS ********" in s for s in stored) == 2  # both FTP logins, masked
    assert any("authenticating as" in s and "key" in s for s in stored)


# --- purged by age


def test_run_purges_the_transcripts_older_than_the_days_they_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer
) -> None:
    monkeypatch.setenv("T_FTP_WRONG", "wrong-Password-0077")
    state = _run(tmp_path, [ftp_destination("dms", ftp_server, "dms", "T_FTP_WRONG")])
    [old] = _attempts(state)
    with sqlite3.connect(state) as db:  # as if it had been made 31 days ago
        db.execute("UPDATE transcripts SET created_at = ?", ((datetime.now(UTC) - timedelta(days=31)).isoformat(),))
    monkeypatch.setenv("T_FTP_WRONG", ftp_server.password)
    rules = tmp_path / "rules"

    result = invoke("run", tmp_path / "inbox", "--rules", rules, "--state", state)  # the parked one stays parked

    assert result.exit_code == 1, result.output
    assert [a["transcript"] for a in _attempts(state)] == [False]
    assert invoke("transcript", old["correlation_id"], "--state", state).exit_code == 1  # known, nothing kept


# --- a shared ledger


def test_transcripts_and_history_marks_on_postgresql(pg_url: str) -> None:
    with open_ledger(pg_url) as ledger:
        delivery = ledger.open_delivery(record_id="veh-1", content_hash="h", client_id="acme", destination="acme/dms",
                                        record_path="/inbox/veh-1")  # fmt: skip
        attempt = ledger.start_attempt(delivery.id, "corr-pg")
        ledger.fail(delivery.id, attempt, "530 refused", final=True)
        ledger.save_transcript(attempt, delivery.id, "acme/dms", [{"ms": 1, "kind": "send", "text": "PASS ********"}],
                               ok=False, keep_ok=5)  # fmt: skip

    text = invoke("transcript", "corr-pg", "--state", pg_url)
    history = json.loads(invoke("history", "--state", pg_url, "--json").stdout)
    unknown = invoke("transcript", "nope", "--state", pg_url)

    assert text.exit_code == 0, text.output
    assert "       1 ms  > PASS ********" in text.stdout.splitlines()
    assert [a["transcript"] for a in history["attempts"]] == [True]
    assert unknown.exit_code == 2 and "no delivery or attempt has the correlation id 'nope'" in unknown.stderr

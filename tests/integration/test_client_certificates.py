"""FTPS client certificates (mutual TLS) against vsftpd with ``require_cert=YES`` and ``validate_cert=YES``:
delivered with the key from a file and with an encrypted key and its passphrase from the secrets
store; refused with a message that says what to set when the certificate is missing, not trusted,
or its key is wrong; the key and the passphrase in no output."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certificates import ClientTLSFiles, make_client_files
from cli_runner import invoke
from click.testing import Result
from records import make_record
from remote_files import remote_files
from rulefiles import rule_document, write_rules
from servers import RunningServer
from servers_ftpd import vsftpd_server

from ftpexport.errors import ConfigError, TLSError
from ftpexport.transport import open_transport
from ftpexport.transport.ftp_clients import FTPSClient
from ftpexport.vault import KEY_ENV, KEY_FILE_ENV, STORE_ENV

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client_files(tmp_path_factory: pytest.TempPathFactory) -> ClientTLSFiles:
    folder = tmp_path_factory.mktemp("client-tls")
    folder.chmod(0o755)  # vsftpd reads the client CA
    return make_client_files(folder)


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> ClientTLSFiles:
    """A client certificate of another CA, which the server does not trust."""
    return make_client_files(tmp_path_factory.mktemp("stranger-tls"), "stranger")


@pytest.fixture(scope="module")
def mtls_server(client_files: ClientTLSFiles) -> Iterator[RunningServer]:
    with vsftpd_server("ftps", client_ca=client_files.ca_file) as server:
        yield server


@pytest.fixture
def server(mtls_server: RunningServer) -> RunningServer:
    mtls_server.clear_root()
    return mtls_server


@pytest.fixture(autouse=True)
def _own_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (KEY_ENV, KEY_FILE_ENV, STORE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _destination(server: RunningServer, **tls: Any) -> dict[str, Any]:
    return {"name": "dms", "url": server.url("photos"), "password": "${secret:dms-password}",
            "ca_file": str(server.ca_file), **{k: str(v) for k, v in tls.items()}}  # fmt: skip


def _run(tmp_path: Path, server: RunningServer, secrets: dict[str, str], **tls: Any) -> tuple[Result, str]:
    """``ftpexport run --json`` of one record to the server with ``tls`` on the destination; the
    secrets (the server's password, the rest given) in a store made for the run. Returns the run's
    result and every output (the store's commands, check, run, status, logs)."""
    store = ["--secrets", tmp_path / "secrets.enc", "--secrets-key-file", tmp_path / "secrets.key"]
    outputs = [invoke("--secrets", tmp_path / "secrets.enc", "secrets", "init", "--key-file",
                      tmp_path / "secrets.key").output]  # fmt: skip
    for name, value in {"dms-password": server.password, **secrets}.items():
        result = invoke(*store, "secrets", "set", name, input=value)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    rules = tmp_path / "rules"
    write_rules(rules, rule_document("acme-motors", [_destination(server, **tls)]))
    make_record(tmp_path / "inbox", 1, "acme-motors")
    checked = invoke(*store, "check", rules)
    result = invoke(*store, "run", tmp_path / "inbox", "--rules", rules, "--state", tmp_path / "ledger.sqlite3",
                    "--json")  # fmt: skip
    status = invoke("status", "--state", tmp_path / "ledger.sqlite3", "--json")
    log = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
    return result, "\n".join([*outputs, checked.output, result.output, result.stderr, status.output, log])


def test_a_key_file_delivers_to_a_server_that_requires_a_client_certificate(
    tmp_path: Path, server: RunningServer, client_files: ClientTLSFiles
) -> None:
    result, output = _run(tmp_path, server, {}, client_cert=client_files.cert_file,
                        client_key_file=client_files.key_file)  # fmt: skip

    assert result.exit_code == 0, output
    assert any(name.endswith(".zip") for name in remote_files(server.root)), output
    assert client_files.key_pem.splitlines()[1] not in output


def test_an_encrypted_key_and_its_passphrase_from_the_store_deliver_and_appear_nowhere(
    tmp_path: Path, server: RunningServer, client_files: ClientTLSFiles
) -> None:
    secrets = {"dms-key": client_files.encrypted_key_pem, "dms-key-passphrase": client_files.passphrase}

    tls = {"client_key": "${secret:dms-key}", "client_key_passphrase": "${secret:dms-key-passphrase}"}

    result, output = _run(tmp_path, server, secrets, client_cert=client_files.cert_file, **tls)

    assert result.exit_code == 0, output
    assert any(name.endswith(".zip") for name in remote_files(server.root)), output
    for line in client_files.encrypted_key_pem.splitlines()[1:-1]:
        assert line not in output
    assert client_files.passphrase not in output
    ledger = (tmp_path / "ledger.sqlite3").read_bytes()
    assert client_files.passphrase.encode() not in ledger


def test_without_a_certificate_the_failure_says_the_server_requires_one_and_what_to_set(
    tmp_path: Path, server: RunningServer
) -> None:
    result, output = _run(tmp_path, server, {})

    assert result.exit_code == 1, output
    error = json.loads(result.stdout)["deliveries"][0]["error"]
    assert "the server requires a client certificate" in error
    assert "set client_cert and client_key_file" in error
    assert remote_files(server.root) == set()


def test_a_certificate_of_a_ca_the_server_does_not_trust_is_refused_by_name(
    server: RunningServer, stranger: ClientTLSFiles
) -> None:
    endpoint = server.endpoint(client_cert=stranger.cert_file, client_key_file=stranger.key_file)

    with pytest.raises(TLSError) as refused, open_transport(endpoint):
        pass

    assert f"the server refused the client certificate {stranger.cert_file}" in str(refused.value)
    assert "signed by a CA the server trusts" in str(refused.value)


@pytest.mark.parametrize(
    ("key", "passphrase", "says"),
    [
        ("encrypted", None, "cannot decrypt the private key (wrong or missing client_key_passphrase)"),
        ("encrypted", "not-the-passphrase", "cannot decrypt the private key (wrong or missing client_key_passphrase)"),
        ("stranger", None, "the private key does not belong to the certificate"),
        ("garbage", None, "cannot load the certificate and key"),
    ],
)
def test_a_key_that_cannot_be_used_is_a_configuration_error_naming_the_certificate(
    server: RunningServer,
    client_files: ClientTLSFiles,
    stranger: ClientTLSFiles,
    key: str,
    passphrase: str | None,
    says: str,
) -> None:
    from pydantic import SecretStr

    text = {"encrypted": client_files.encrypted_key_pem, "stranger": stranger.key_pem, "garbage": "not a key"}[key]
    endpoint = server.endpoint(client_cert=client_files.cert_file, client_key=SecretStr(text),
                               client_key_passphrase=SecretStr(passphrase) if passphrase else None)  # fmt: skip

    with pytest.raises(ConfigError) as refused, open_transport(endpoint):
        pass

    message = str(refused.value)
    assert f"client_cert {client_files.cert_file}: {says}" in message
    assert "client_key_passphrase its passphrase" in message  # what to do
    for line in text.splitlines()[1:-1]:
        assert line not in message
    if passphrase:
        assert passphrase not in message


def test_a_refused_certificate_is_named_also_when_the_server_closed_before_the_first_command(
    server: RunningServer, stranger: ClientTLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS 1.3: the server judges the client certificate after the handshake, sends its alert and
    closes. A client slow to send its first command (a loaded machine) used to write USER into the
    closed connection and report "closed the TLS connection during login", the alert unread."""
    real_auth = FTPSClient.auth

    def slow_auth(self: FTPSClient) -> str:
        reply = real_auth(self)
        time.sleep(0.5)  # the server has refused the certificate and closed by now
        return reply

    monkeypatch.setattr(FTPSClient, "auth", slow_auth)
    endpoint = server.endpoint(client_cert=stranger.cert_file, client_key_file=stranger.key_file)

    with pytest.raises(TLSError) as refused, open_transport(endpoint):
        pass

    assert f"the server refused the client certificate {stranger.cert_file}" in str(refused.value)
    assert "signed by a CA the server trusts" in str(refused.value)

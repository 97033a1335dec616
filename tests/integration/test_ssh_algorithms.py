"""The SSH algorithm policy, against what goes on the wire and real sshd servers.

- what the client offers in its KEXINIT (read off the wire by a listener that plays the server):
  AEAD or CTR ciphers, SHA-2 MACs, no SHA-1 key exchange, no SHA-1 or DSA host keys; a destination's
  ``ssh_legacy_algorithms`` adds exactly the named ones, after the modern ones;
- an sshd that offers only a CBC cipher and a SHA-1 MAC is refused by default, with a message that
  names the families without a common algorithm and the field that would enable them; naming them
  connects and uploads;
- an sshd with only a SHA-1 key exchange is refused, saying that ftpexport cannot speak it;
- ``check`` warns for each legacy algorithm named, ``test-connection`` for each one in use (and for
  one named that the server did not need).
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers
import yaml
from cli_runner import invoke
from daemons import HOST
from pydantic import SecretStr
from servers import RunningServer

from ftpexport.errors import PermanentError, TransportError
from ftpexport.transport import Endpoint, open_transport, upload_file
from ftpexport.transport.sftp import SFTPTransport

pytestmark = pytest.mark.integration

ANY_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
KEXINIT_FIELDS = ("kex", "host_keys", "ciphers_c2s", "ciphers_s2c", "macs_c2s", "macs_s2c")


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _client_kexinit(conn: socket.socket) -> dict[str, list[str]]:
    """Play an SSH server up to the client's KEXINIT (sent in clear) and return its name-lists."""
    conn.sendall(b"SSH-2.0-OpenSSH_9.9 listener\r\n")
    banner = b""
    while not banner.endswith(b"\n"):
        banner += _read_exactly(conn, 1)
    length = struct.unpack(">I", _read_exactly(conn, 4))[0]
    packet = _read_exactly(conn, length)
    payload = packet[1 : length - packet[0]]  # padding length byte, payload, padding
    assert payload[0] == 20, payload[:1]  # SSH_MSG_KEXINIT
    offset = 17  # message type and 16-byte cookie
    lists: dict[str, list[str]] = {}
    for name in KEXINIT_FIELDS:
        size = struct.unpack(">I", payload[offset : offset + 4])[0]
        lists[name] = payload[offset + 4 : offset + 4 + size].decode().split(",")
        offset += 4 + size
    return lists


def offered_by_client(**endpoint: object) -> dict[str, list[str]]:
    """What ``SFTPTransport.connect`` offers in its KEXINIT, read by a listener on loopback."""
    listener = socket.create_server((HOST, 0))
    found: dict[str, list[str]] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            found.update(_client_kexinit(conn))

    thread = threading.Thread(target=serve, name="test-kexinit-listener")
    thread.start()
    try:
        transport = open_transport(
            Endpoint(
                scheme="sftp", host=HOST, port=listener.getsockname()[1], username="user",
                password=SecretStr("pw"), timeout=5.0, host_keys=(ANY_HOST_KEY,), **endpoint,  # type: ignore[arg-type]
            )
        )  # fmt: skip
        with pytest.raises(TransportError):  # the listener hangs up after the KEXINIT
            transport.connect()
    finally:
        thread.join(timeout=10)
        listener.close()
    return found


def _banned(lists: dict[str, list[str]]) -> list[str]:
    """Every offered name that hardening guides reject."""
    bad = []
    for name in lists["ciphers_c2s"] + lists["ciphers_s2c"]:
        if not (name.endswith("-ctr") or "-gcm@" in name or name.startswith("chacha20-poly1305")):
            bad.append(name)
    for name in lists["macs_c2s"] + lists["macs_s2c"]:
        if not name.startswith("hmac-sha2-"):
            bad.append(name)
    for name in lists["kex"]:
        if name.endswith("-sha1") or "group1-" in name:
            bad.append(name)
    for name in lists["host_keys"]:
        if name.split("-cert-")[0] in ("ssh-rsa", "ssh-dss"):
            bad.append(name)
    return bad


def test_the_client_offers_no_legacy_algorithm_by_default() -> None:
    lists = offered_by_client()

    assert lists["ciphers_c2s"] and lists["macs_c2s"] and lists["kex"] and lists["host_keys"]
    assert _banned(lists) == []


def test_named_legacy_algorithms_are_offered_after_the_modern_ones_and_nothing_else() -> None:
    lists = offered_by_client(ssh_legacy_algorithms=("aes128-cbc", "hmac-sha1"))

    assert sorted(_banned(lists)) == ["aes128-cbc", "aes128-cbc", "hmac-sha1", "hmac-sha1"]
    assert lists["ciphers_c2s"][-1] == "aes128-cbc" and lists["macs_c2s"][-1] == "hmac-sha1"
    assert len(lists["ciphers_c2s"]) > 1 and len(lists["macs_c2s"]) > 1


# --- real sshd servers with old algorithms only


@pytest.fixture(scope="module")
def cbc_sha1_server() -> Iterator[RunningServer]:
    """An sshd that offers only aes128-cbc and hmac-sha1."""
    with servers.openssh_server(extra_config=("Ciphers aes128-cbc", "MACs hmac-sha1")) as server:
        yield server


def test_a_server_with_only_cbc_and_sha1_is_refused_with_what_to_do(cbc_sha1_server: RunningServer) -> None:
    transport = open_transport(cbc_sha1_server.endpoint())

    with pytest.raises(PermanentError) as caught:
        transport.connect()

    message = str(caught.value)
    where = f"{cbc_sha1_server.host}:{cbc_sha1_server.port}"
    assert f"no SSH algorithm in common with the server at {where}" in message
    assert "cipher: it offers only aes128-cbc" in message and "MAC: it offers only hmac-sha1" in message
    assert "ssh_legacy_algorithms: [aes128-cbc, hmac-sha1]" in message
    assert "Incompatible" not in message  # paramiko's own words stay in the debug log


def test_naming_the_legacy_algorithms_connects_and_uploads(cbc_sha1_server: RunningServer) -> None:
    cbc_sha1_server.clear_root()
    transport = open_transport(cbc_sha1_server.endpoint(ssh_legacy_algorithms=("aes128-cbc", "hmac-sha1")))

    with transport:
        assert isinstance(transport, SFTPTransport)
        assert transport.algorithms["cipher"] == "aes128-cbc" and transport.algorithms["mac"] == "hmac-sha1"
        assert transport.legacy_in_use == ["aes128-cbc", "hmac-sha1"]
        upload_file(transport, lambda: io.BytesIO(b"photo"), 5, cbc_sha1_server.remote_path(), "car.jpg")

    assert (cbc_sha1_server.root / "car.jpg").read_bytes() == b"photo"


def test_naming_only_the_cipher_still_fails_on_the_mac_alone(cbc_sha1_server: RunningServer) -> None:
    transport = open_transport(cbc_sha1_server.endpoint(ssh_legacy_algorithms=("aes128-cbc",)))

    with pytest.raises(PermanentError) as caught:
        transport.connect()

    assert "MAC: it offers only hmac-sha1" in str(caught.value) and "cipher:" not in str(caught.value)
    assert "ssh_legacy_algorithms: [hmac-sha1]" in str(caught.value)


def test_a_server_with_only_a_sha1_key_exchange_is_refused_and_it_cannot_be_enabled() -> None:
    with servers.openssh_server(extra_config=("KexAlgorithms diffie-hellman-group14-sha1",)) as server:
        transport = open_transport(server.endpoint())
        with pytest.raises(PermanentError) as caught:
            transport.connect()

    message = str(caught.value)
    assert "key exchange: it offers only diffie-hellman-group14-sha1" in message
    assert "ftpexport cannot speak any key exchange algorithm the server offers" in message


# --- what check and test-connection tell the operator


def _rules_naming_legacy(tmp_path: Path, server: RunningServer) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    destination = {
        "name": "old",
        "url": server.url(),
        "password": "${LEGACY_SSH_PASSWORD}",
        "host_key": server.host_key,
        "ssh_legacy_algorithms": ["aes128-cbc", "hmac-sha1", "3des-cbc"],
    }
    (rules / "acme.yaml").write_text(yaml.safe_dump({"client_id": "acme", "destinations": [destination]}))
    return rules


def test_check_and_test_connection_warn_about_each_legacy_algorithm(
    tmp_path: Path, cbc_sha1_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cbc_sha1_server.clear_root()
    monkeypatch.setenv("LEGACY_SSH_PASSWORD", cbc_sha1_server.password)
    rules = _rules_naming_legacy(tmp_path, cbc_sha1_server)

    checked = invoke("check", rules)
    probed = invoke("test-connection", "acme", "--rules", rules, "--json")

    assert checked.exit_code == 0, checked.output
    for name in ("aes128-cbc", "hmac-sha1", "3des-cbc"):
        assert f"warning: destination old: ssh_legacy_algorithms enables {name}" in checked.output
    assert probed.exit_code == 0, probed.output
    [report] = json.loads(probed.stdout)["destinations"]
    assert report["ok"]
    assert [w.split(",")[0] for w in report["warnings"]] == [
        "in use: ssh_legacy_algorithms enables aes128-cbc",
        "in use: ssh_legacy_algorithms enables hmac-sha1",
        "ssh_legacy_algorithms names 3des-cbc",
    ]
    text = invoke("test-connection", "acme", "--rules", rules)
    assert "  warning: in use: ssh_legacy_algorithms enables aes128-cbc, a CBC cipher" in text.output

"""One conformance suite run against every real server, plus protocol-specific checks (TLS, host keys)."""

from __future__ import annotations

import io
import os
import posixpath
import secrets
import select
import socket
import subprocess
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certificates import make_tls_files
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from daemons import HOST, free_port
from pydantic import SecretStr
from pyftpdlib.handlers import FTPHandler
from servers import RunningServer, openssh_server, pyftpdlib_server

from ftpexport.errors import (
    AuthenticationError,
    HostKeyError,
    PermanentError,
    RemoteExistsError,
    TLSError,
    TransientError,
)
from ftpexport.transport import Transport, Upload, open_transport, upload_file
from ftpexport.transport.base import temporary_name
from ftpexport.transport.ftp import FTPTransport
from ftpexport.transport.pool import ConnectionPool
from ftpexport.transport.sftp import SFTPTransport

pytestmark = pytest.mark.integration


def upload(transport: Transport, data: bytes, remote_dir: str, name: str, **options: object) -> Upload:
    """``upload_file`` from bytes in memory."""
    return upload_file(transport, lambda: io.BytesIO(data), len(data), remote_dir, name, **options)  # type: ignore[arg-type]


#: The matrix's "n/a" cells: (test, server) -> why the test does not apply to that server. Every
#: other test runs on every server of ``conftest.MATRIX``; on a server that refuses renames
#: (``RunningServer.renames``) uploads are made with ``atomic=False``, as its error message advises.
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    (test, server): "the server refuses renames; test_refused_rename_* check what happens there instead"
    for test in ("test_atomic_upload_leaves_no_temporary_file", "test_rename_replaces_the_target")
    for server in ("openssh-sftp-norename",)
} | {
    ("test_idle_connection_closed_by_the_server_is_replaced", server): (
        "Pure-FTPd's idle timeout is in whole minutes (--maxidletime): the minute of waiting is spent once, "
        "on pureftpd-ftps"
    )
    for server in ("pureftpd-ftp",)
}


@pytest.fixture(autouse=True)
def _not_applicable(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    if callspec is None:
        return
    for value in callspec.params.values():
        reason = NOT_APPLICABLE.get((request.node.originalname, value))
        if reason is not None:
            pytest.skip(f"n/a on {value}: {reason}")


@pytest.fixture
def transport(any_server: RunningServer) -> Iterator[Transport]:
    with open_transport(any_server.endpoint()) as connected:
        yield connected


#: a name in NFC with letters outside ASCII, as a DMS writes them (2 bytes each in UTF-8)
NON_ASCII_NAME = unicodedata.normalize("NFC", "Citroën_Ø_01.jpg")
NON_ASCII_FOLDER = unicodedata.normalize("NFC", "Škoda/Ærø Bilhus")


def server_closed(transport: Transport) -> bool:
    """True once the server has closed this idle connection (its control or SSH socket reads EOF or a reply)."""
    if isinstance(transport, FTPTransport):
        sock = transport.ftp.sock
    else:
        assert isinstance(transport, SFTPTransport)
        return not transport.seems_alive()
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def wait_until_closed_by_server(transport: Transport, idle_timeout: float) -> None:
    """Wait, by polling, until the server closes an idle connection (up to ``idle_timeout`` + 30 s)."""
    deadline = time.monotonic() + idle_timeout + 30
    while not server_closed(transport):
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not close an idle connection within {idle_timeout + 30:g} s")
        time.sleep(0.05)


class TestTransportConformance:
    """What every transport must do, checked on each real server (fsspec / rclone style)."""

    def test_upload_small_file(self, any_server: RunningServer, transport: Transport) -> None:
        result = upload(transport, b"hello, dealer\n", any_server.remote_path(), "hello.txt", atomic=any_server.renames)

        assert (any_server.root / "hello.txt").read_bytes() == b"hello, dealer\n"
        assert result.size == 14
        assert not result.skipped
        assert result.path == any_server.remote_path("hello.txt")

    def test_upload_5_mb_random_file(self, any_server: RunningServer, transport: Transport) -> None:
        data = os.urandom(5 * 1024 * 1024)
        blocks: list[int] = []

        upload(transport, data, any_server.remote_path(), "big.bin", callback=blocks.append, atomic=any_server.renames)

        assert (any_server.root / "big.bin").read_bytes() == data
        assert sum(blocks) == len(data)
        assert len(blocks) > 1

    def test_overwrite_existing_file(self, any_server: RunningServer, transport: Transport) -> None:
        atomic = any_server.renames
        upload(transport, b"old content, longer than the new one", any_server.remote_path(), "car.jpg", atomic=atomic)
        upload(transport, b"new", any_server.remote_path(), "car.jpg", atomic=atomic)

        assert (any_server.root / "car.jpg").read_bytes() == b"new"

    def test_makedirs_creates_nested_directories(self, any_server: RunningServer, transport: Transport) -> None:
        any_server.make_dir("2026")  # a parent that exists already
        remote_dir = any_server.remote_path("2026/11/20/acme")

        transport.makedirs(remote_dir)
        transport.makedirs(remote_dir)  # existing directories are fine
        upload(transport, b"x", remote_dir, "a.zip", atomic=any_server.renames)

        assert (any_server.root / "2026/11/20/acme/a.zip").read_bytes() == b"x"

    def test_makedirs_sees_directories_made_by_others(self, any_server: RunningServer) -> None:
        with open_transport(any_server.endpoint()) as first, open_transport(any_server.endpoint()) as second:
            first.makedirs(any_server.remote_path("shared/one"))
            second.makedirs(any_server.remote_path("shared/one/two"))

        assert (any_server.root / "shared/one/two").is_dir()

    def test_atomic_upload_leaves_no_temporary_file(self, any_server: RunningServer, transport: Transport) -> None:
        upload(transport, b"zip bytes", any_server.remote_path(), "VIN123.zip", atomic=True)

        assert sorted(p.name for p in any_server.root.iterdir()) == ["VIN123.zip"]

    def test_if_exists_skip_keeps_the_remote_file(self, any_server: RunningServer, transport: Transport) -> None:
        any_server.make_file("car.jpg", b"theirs")

        result = upload(transport, b"ours", any_server.remote_path(), "car.jpg", if_exists="skip")

        assert result.skipped
        assert (any_server.root / "car.jpg").read_bytes() == b"theirs"

    def test_if_exists_fail_raises(self, any_server: RunningServer, transport: Transport) -> None:
        any_server.make_file("car.jpg", b"theirs")

        with pytest.raises(RemoteExistsError) as caught:
            upload(transport, b"ours", any_server.remote_path(), "car.jpg", if_exists="fail")

        assert caught.value.path == any_server.remote_path("car.jpg")
        assert (any_server.root / "car.jpg").read_bytes() == b"theirs"

    def test_if_exists_fail_uploads_a_new_file(self, any_server: RunningServer, transport: Transport) -> None:
        upload(transport, b"ours", any_server.remote_path(), "new.jpg", if_exists="fail", atomic=any_server.renames)

        assert (any_server.root / "new.jpg").read_bytes() == b"ours"

    def test_non_atomic_upload_writes_the_final_name(self, any_server: RunningServer, transport: Transport) -> None:
        upload(transport, b"direct", any_server.remote_path(), "direct.json", atomic=False)

        assert sorted(p.name for p in any_server.root.iterdir()) == ["direct.json"]
        assert (any_server.root / "direct.json").read_bytes() == b"direct"

    def test_size(self, any_server: RunningServer, transport: Transport) -> None:
        any_server.make_file("seven.txt", b"1234567")

        assert transport.size(any_server.remote_path("seven.txt")) == 7
        assert transport.size(any_server.remote_path("missing.txt")) is None

    def test_rename_replaces_the_target(self, any_server: RunningServer, transport: Transport) -> None:
        any_server.make_file("a", b"A")
        any_server.make_file("b", b"B")

        transport.rename(any_server.remote_path("a"), any_server.remote_path("b"))

        assert sorted(p.name for p in any_server.root.iterdir()) == ["b"]
        assert (any_server.root / "b").read_bytes() == b"A"

    def test_remove(self, any_server: RunningServer, transport: Transport) -> None:
        any_server.make_file("gone.txt", b"x")

        transport.remove(any_server.remote_path("gone.txt"))
        transport.remove(any_server.remote_path("gone.txt"))  # a missing file is fine

        assert not (any_server.root / "gone.txt").exists()

    def test_upload_into_a_missing_directory_is_permanent(
        self, any_server: RunningServer, transport: Transport
    ) -> None:
        with pytest.raises(PermanentError) as caught:
            upload(transport, b"x", any_server.remote_path("no/such/dir"), "a.jpg")

        assert any_server.endpoint().display in str(caught.value)
        assert "no/such/dir" in str(caught.value)

    def test_wrong_password_is_an_authentication_error(self, any_server: RunningServer) -> None:
        wrong = secrets.token_urlsafe(16)
        endpoint = any_server.endpoint(password=SecretStr(wrong))

        with pytest.raises(AuthenticationError) as caught, open_transport(endpoint):
            pass

        for text in (str(caught.value), repr(caught.value), repr(endpoint)):
            assert wrong not in text
            assert any_server.password not in text
        assert endpoint.display in str(caught.value)

    def test_nothing_listening_is_transient(self, any_server: RunningServer) -> None:
        endpoint = any_server.endpoint(port=free_port())

        with pytest.raises(TransientError) as caught, open_transport(endpoint):
            pass

        assert caught.value.retriable
        assert str(endpoint.port) in str(caught.value)

    def test_silent_server_times_out_as_transient(self, any_server: RunningServer) -> None:
        # A socket that listens but never answers: the kernel accepts, nobody greets.
        with socket.socket() as silent:
            silent.bind((HOST, 0))
            silent.listen()
            endpoint = any_server.endpoint(port=silent.getsockname()[1], timeout=0.5)

            with pytest.raises(TransientError, match="timed out"), open_transport(endpoint):
                pass

    def test_no_secret_in_transport_repr(self, any_server: RunningServer, transport: Transport) -> None:
        assert any_server.password not in repr(transport)
        assert any_server.password not in repr(transport.endpoint)

    def test_upload_empty_file(self, any_server: RunningServer, transport: Transport) -> None:
        result = upload(transport, b"", any_server.remote_path(), "empty.json", atomic=any_server.renames)

        assert (any_server.root / "empty.json").read_bytes() == b""
        assert result.size == 0

    def test_non_ascii_names(self, any_server: RunningServer, transport: Transport) -> None:
        remote_dir = any_server.remote_path(NON_ASCII_FOLDER)

        transport.makedirs(remote_dir)
        upload(transport, b"photo", remote_dir, NON_ASCII_NAME, atomic=any_server.renames)

        # the server stored the names as UTF-8 bytes in NFC, not Latin-1 nor percent-escaped
        folder = any_server.root / NON_ASCII_FOLDER
        assert [p.name for p in folder.iterdir()] == [NON_ASCII_NAME]
        assert os.fsencode(folder / NON_ASCII_NAME) == str(folder / NON_ASCII_NAME).encode()
        assert (folder / NON_ASCII_NAME).read_bytes() == b"photo"
        assert transport.size(posixpath.join(remote_dir, NON_ASCII_NAME)) == 5

    def test_folders_that_already_exist(self, any_server: RunningServer) -> None:
        # Made by someone else (the DMS, a previous run): a new connection knows nothing of them.
        any_server.make_dir("2026/11/20/acme")
        remote_dir = any_server.remote_path("2026/11/20/acme")

        with open_transport(any_server.endpoint()) as transport:
            transport.makedirs(remote_dir)
            upload(transport, b"x", remote_dir, "a.zip", atomic=any_server.renames)
            transport.makedirs(any_server.remote_path("2026/11"))  # a parent of a known folder

        assert (any_server.root / "2026/11/20/acme/a.zip").read_bytes() == b"x"

    def test_a_file_where_a_folder_should_be_is_permanent(
        self, any_server: RunningServer, transport: Transport
    ) -> None:
        any_server.make_file("2026", b"not a folder")

        with pytest.raises(PermanentError) as caught:
            transport.makedirs(any_server.remote_path("2026/11"))

        assert any_server.endpoint().display in str(caught.value)
        assert (any_server.root / "2026").read_bytes() == b"not a folder"

    def test_a_transfer_cut_mid_file_never_shows_the_final_name(self, any_server: RunningServer) -> None:
        data = os.urandom(4 * 1024 * 1024)
        endpoint = any_server.endpoint()
        with open_transport(endpoint) as transport:

            def cut_after_the_first_block(_: int) -> None:
                transport.abort()  # the connection drops mid-file (network, server restart)

            with pytest.raises(TransientError):
                upload(transport, data, any_server.remote_path(), "VIN1.zip", callback=cut_after_the_first_block)

        names = [p.name for p in any_server.root.iterdir()]
        assert "VIN1.zip" not in names
        assert set(names) <= {temporary_name("VIN1.zip")}

        # the retry, on a new connection, publishes the whole file
        with open_transport(endpoint) as transport:
            upload(transport, data, any_server.remote_path(), "VIN1.zip", atomic=any_server.renames)
        assert (any_server.root / "VIN1.zip").read_bytes() == data

    def test_unknown_user_is_an_authentication_error(self, any_server: RunningServer) -> None:
        endpoint = any_server.endpoint(username=f"nobody-{secrets.token_hex(4)}")

        with pytest.raises(AuthenticationError) as caught, open_transport(endpoint):
            pass

        assert endpoint.display in str(caught.value)
        assert any_server.password not in str(caught.value)


def test_idle_connection_closed_by_the_server_is_replaced(idle_server: RunningServer) -> None:
    """The server drops a pooled connection that waited between two files; the next file goes through."""
    pool = ConnectionPool(idle_server.endpoint(), size=1)
    atomic = idle_server.renames
    try:
        first = pool.acquire()
        upload(first, b"first", idle_server.remote_path(), "1.jpg", atomic=atomic)
        pool.release(first, reuse=True)

        wait_until_closed_by_server(first, idle_timeout=60)

        second = pool.acquire()
        upload(second, b"second", idle_server.remote_path(), "2.jpg", atomic=atomic)
        pool.release(second, reuse=True)
    finally:
        pool.close()

    assert pool.opened == 2
    assert (idle_server.root / "1.jpg").read_bytes() == b"first"
    assert (idle_server.root / "2.jpg").read_bytes() == b"second"


# --- servers that refuse renames


@pytest.fixture(params=["sftp_norename_server", "pureftpd_norename_server"], ids=["openssh", "pureftpd"])
def norename_server(request: pytest.FixtureRequest) -> RunningServer:
    return request.getfixturevalue(request.param)


def test_refused_rename_is_a_clear_permanent_error(norename_server: RunningServer) -> None:
    with open_transport(norename_server.endpoint()) as transport, pytest.raises(PermanentError) as caught:
        upload(transport, b"zip bytes", norename_server.remote_path(), "VIN123.zip", atomic=True)

    message = str(caught.value)
    assert "the server refused to rename .VIN123.zip.part to VIN123.zip" in message
    assert "upload.atomic: false" in message
    assert norename_server.endpoint().display in message
    assert not caught.value.retriable
    assert list(norename_server.root.iterdir()) == []  # the temporary file was removed


def test_refused_rename_keeps_the_target(norename_server: RunningServer) -> None:
    norename_server.make_file("VIN123.zip", b"published yesterday")

    with open_transport(norename_server.endpoint()) as transport, pytest.raises(PermanentError):
        upload(transport, b"today", norename_server.remote_path(), "VIN123.zip", atomic=True)

    assert sorted(p.name for p in norename_server.root.iterdir()) == ["VIN123.zip"]
    assert (norename_server.root / "VIN123.zip").read_bytes() == b"published yesterday"


# --- FTPS


@pytest.fixture(params=["ftps_server", "ftps_implicit_server"], ids=["ftps", "ftps-implicit"])
def ftps_any(request: pytest.FixtureRequest) -> RunningServer:
    return request.getfixturevalue(request.param)


def test_ftps_without_ca_file_is_a_tls_error(ftps_any: RunningServer) -> None:
    # The test CA is not among the system CAs, so the certificate cannot be verified.
    with pytest.raises(TLSError) as caught, open_transport(ftps_any.endpoint(ca_file=None)):
        pass

    assert "ca_file" in str(caught.value)
    assert ftps_any.password not in str(caught.value)


def test_ftps_with_another_ca_is_a_tls_error(ftps_server: RunningServer, tmp_path: Path) -> None:
    other = make_tls_files(tmp_path)

    with pytest.raises(TLSError), open_transport(ftps_server.endpoint(ca_file=other.ca_file)):
        pass


def test_ftps_missing_ca_file_is_a_tls_error(ftps_server: RunningServer, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"

    with pytest.raises(TLSError, match=r"nope\.pem"), open_transport(ftps_server.endpoint(ca_file=missing)):
        pass


def test_implicit_ftps_against_explicit_server_fails_cleanly(ftps_server: RunningServer) -> None:
    # The explicit server greets in plain text; a TLS client must not hang or crash on it.
    endpoint = ftps_server.endpoint(scheme="ftps+implicit", timeout=2)

    with pytest.raises((TLSError, TransientError)), open_transport(endpoint):
        pass


def test_ftps_to_vsftpd_reuses_the_tls_session(vsftpd_ftps_server: RunningServer) -> None:
    # vsftpd: require_ssl_reuse=YES rejects a data connection that does not resume the session.
    data = os.urandom(300_000)
    with open_transport(vsftpd_ftps_server.endpoint()) as transport:
        transport.makedirs(vsftpd_ftps_server.remote_path("in/2026"))
        upload(transport, data, vsftpd_ftps_server.remote_path("in/2026"), "car.bin")
        upload(transport, b"second", vsftpd_ftps_server.remote_path("in/2026"), "car.bin")
        assert transport.size(vsftpd_ftps_server.remote_path("in/2026/car.bin")) == 6

    assert (vsftpd_ftps_server.root / "in/2026/car.bin").read_bytes() == b"second"
    assert sorted(p.name for p in (vsftpd_ftps_server.root / "in/2026").iterdir()) == ["car.bin"]


# --- SFTP host keys and key login


def ssh_keygen_fingerprint(public_key_line: str, tmp_path: Path) -> str:
    """The SHA256 fingerprint OpenSSH shows for a public key line."""
    pub = tmp_path / "key.pub"
    pub.write_text(public_key_line + "\n")
    output = subprocess.run(["ssh-keygen", "-lf", str(pub)], check=True, capture_output=True, text=True).stdout
    return output.split()[1]


def other_ed25519_key_line() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_sftp_server_fingerprint_matches_ssh_keygen(sftp_server: RunningServer, tmp_path: Path) -> None:
    assert sftp_server.host_key is not None
    expected = ssh_keygen_fingerprint(sftp_server.host_key, tmp_path)

    with open_transport(sftp_server.endpoint()) as transport:
        assert transport.server_fingerprint == expected


def test_sftp_wrong_pinned_key_is_refused(sftp_server: RunningServer, tmp_path: Path) -> None:
    assert sftp_server.host_key is not None
    real = ssh_keygen_fingerprint(sftp_server.host_key, tmp_path)
    endpoint = sftp_server.endpoint(host_keys=(other_ed25519_key_line(),))

    with pytest.raises(HostKeyError) as caught, open_transport(endpoint):
        pass

    message = str(caught.value)
    assert real in message
    assert "operator" in message
    assert sftp_server.password not in message


def test_sftp_pinned_key_of_another_type_is_refused(sftp_server: RunningServer, tmp_path: Path) -> None:
    # The server has only an ed25519 key; the pin is ECDSA, so key exchange itself fails.
    assert sftp_server.host_key is not None
    ecdsa = ec.generate_private_key(ec.SECP256R1()).public_key()
    line = ecdsa.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()

    with pytest.raises(HostKeyError) as caught, open_transport(sftp_server.endpoint(host_keys=(line,))):
        pass

    assert ssh_keygen_fingerprint(sftp_server.host_key, tmp_path) in str(caught.value)


def test_sftp_without_pinned_key_refuses_and_shows_the_key(sftp_server: RunningServer, tmp_path: Path) -> None:
    assert sftp_server.host_key is not None
    endpoint = sftp_server.endpoint(host_keys=())

    with pytest.raises(HostKeyError) as caught, open_transport(endpoint):
        pass

    message = str(caught.value)
    assert ssh_keygen_fingerprint(sftp_server.host_key, tmp_path) in message
    assert sftp_server.host_key in message  # the line to pin
    assert "ssh-ed25519" in message


def test_sftp_accepts_ssh_keyscan_style_line(sftp_server: RunningServer) -> None:
    line = f"[{HOST}]:{sftp_server.port} {sftp_server.host_key} some comment"

    with open_transport(sftp_server.endpoint(host_keys=(line,))) as transport:
        assert transport.size(sftp_server.remote_path("missing")) is None


def test_sftp_known_hosts(sftp_server: RunningServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"other.example {other_ed25519_key_line()}\n[{HOST}]:{sftp_server.port} {sftp_server.host_key}\n"
    )
    endpoint = sftp_server.endpoint(host_keys=(), known_hosts=known_hosts)

    with open_transport(endpoint) as transport:
        upload(transport, b"via known_hosts", sftp_server.remote_path(), "k.txt")

    assert (sftp_server.root / "k.txt").read_bytes() == b"via known_hosts"


def test_sftp_known_hosts_without_this_host_is_refused(sftp_server: RunningServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"other.example {sftp_server.host_key}\n")

    with (
        pytest.raises(HostKeyError, match="no host key pinned"),
        open_transport(sftp_server.endpoint(host_keys=(), known_hosts=known_hosts)),
    ):
        pass


def test_sftp_known_hosts_with_a_changed_key_is_refused(sftp_server: RunningServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{HOST}]:{sftp_server.port} {other_ed25519_key_line()}\n")

    with (
        pytest.raises(HostKeyError, match="not the pinned one"),
        open_transport(sftp_server.endpoint(host_keys=(), known_hosts=known_hosts)),
    ):
        pass


def test_sftp_login_with_key_file(sftp_server: RunningServer) -> None:
    endpoint = sftp_server.endpoint(password=None, key_file=sftp_server.client_key_file)

    with open_transport(endpoint) as transport:
        upload(transport, b"by key", sftp_server.remote_path(), "key.txt")

    assert (sftp_server.root / "key.txt").read_bytes() == b"by key"


def test_sftp_login_with_private_key_text(sftp_server: RunningServer) -> None:
    assert sftp_server.client_key_file is not None
    text = sftp_server.client_key_file.read_text()
    endpoint = sftp_server.endpoint(password=None, private_key=SecretStr(text))

    with open_transport(endpoint) as transport:
        assert isinstance(transport, SFTPTransport)
        assert transport.size(sftp_server.remote_path("nothing")) is None

    assert text not in repr(endpoint)


def test_sftp_unauthorised_key_is_an_authentication_error(sftp_server: RunningServer, tmp_path: Path) -> None:
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    endpoint = sftp_server.endpoint(password=None, key_file=key)

    with pytest.raises(AuthenticationError) as caught, open_transport(endpoint):
        pass

    assert key.read_text() not in str(caught.value)


def test_sftp_encrypted_key_without_passphrase(sftp_server: RunningServer, tmp_path: Path) -> None:
    key = tmp_path / "locked"
    passphrase = secrets.token_urlsafe(12)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(key)], check=True)

    with (
        pytest.raises(AuthenticationError, match="key_passphrase") as caught,
        open_transport(sftp_server.endpoint(password=None, key_file=key)),
    ):
        pass

    assert passphrase not in str(caught.value)


# --- FTP servers that do not replace on rename


def _rnto_refusing_to_replace(handler: Any, path: str) -> None:
    """RNTO like IIS: 550 when the target exists."""
    if os.path.exists(path):
        handler.respond("550 Cannot create a file when that file already exists.")
        return
    FTPHandler.ftp_RNTO(handler, path)


def test_sftp_rename_replaces_on_a_server_without_posix_rename() -> None:
    # No posix-rename@openssh.com: a plain SFTP rename, which fails on an existing target.
    with openssh_server(refuse=("posix-rename",)) as server:
        server.make_file("VIN1.zip", b"old")
        with open_transport(server.endpoint()) as transport:
            upload(transport, b"new archive", server.remote_path(), "VIN1.zip")
            upload(transport, b"first", server.remote_path(), "VIN2.zip")

        assert sorted(p.name for p in server.root.iterdir()) == ["VIN1.zip", "VIN2.zip"]
        assert (server.root / "VIN1.zip").read_bytes() == b"new archive"


def test_ftp_rename_replaces_even_when_the_server_refuses_to(tmp_path: Path) -> None:
    with pyftpdlib_server("ftp", ftp_RNTO=_rnto_refusing_to_replace) as server:
        server.make_file("VIN1.zip", b"old")
        with open_transport(server.endpoint()) as transport:
            upload(transport, b"new archive", server.remote_path(), "VIN1.zip")

        assert sorted(p.name for p in server.root.iterdir()) == ["VIN1.zip"]
        assert (server.root / "VIN1.zip").read_bytes() == b"new archive"

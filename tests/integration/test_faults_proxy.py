"""The fault-injection proxy (``tests/faults.py``) does what each mode promises, against the real servers."""

from __future__ import annotations

import contextlib
import ftplib
import io
import os
import socket
import time
from collections.abc import Iterator

import paramiko
import pytest
from faults import FaultProxy, closed_port
from servers import RunningServer

pytestmark = pytest.mark.integration

#: what a client may see when its connection is cut under it
CUT_ERRORS = (OSError, EOFError, ftplib.Error, paramiko.SSHException)


@pytest.fixture
def ftp_proxy(ftp_server: RunningServer) -> Iterator[FaultProxy]:
    with FaultProxy(ftp_server.host, ftp_server.port) as proxy:
        yield proxy


@pytest.fixture
def sftp_proxy(sftp_server: RunningServer) -> Iterator[FaultProxy]:
    with FaultProxy(sftp_server.host, sftp_server.port) as proxy:
        yield proxy


@contextlib.contextmanager
def ftp_login(proxy: FaultProxy, server: RunningServer, timeout: float = 5.0) -> Iterator[ftplib.FTP]:
    """An ftplib session whose control channel goes through ``proxy`` (passive data goes direct)."""
    ftp = ftplib.FTP(timeout=timeout)
    try:
        ftp.connect(proxy.host, proxy.port)
        ftp.login(server.username, server.password)
        yield ftp
    finally:
        ftp.close()


@contextlib.contextmanager
def sftp_session(proxy: FaultProxy, server: RunningServer, timeout: float = 10.0) -> Iterator[paramiko.SFTPClient]:
    """A paramiko SFTP session through ``proxy``, host key checked, logged in with the client key."""
    assert server.client_key_file is not None
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        assert f"{key.get_name()} {key.get_base64()}" == server.host_key
        transport.auth_publickey(
            server.username, paramiko.Ed25519Key.from_private_key_file(str(server.client_key_file))
        )
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        sftp.get_channel().settimeout(timeout)  # type: ignore[union-attr]
        try:
            yield sftp
        finally:
            with contextlib.suppress(EOFError, OSError, paramiko.SSHException):
                sftp.close()  # after a cut the session is dead: closing it may fail, and that is expected
    finally:
        transport.close()
        sock.close()


def test_passthrough_ftp_login_and_upload(ftp_server: RunningServer, ftp_proxy: FaultProxy) -> None:
    with ftp_login(ftp_proxy, ftp_server) as ftp:
        ftp.storbinary("STOR hello.txt", io.BytesIO(b"hello through the proxy\n"))
        ftp.quit()
    assert (ftp_server.root / "hello.txt").read_bytes() == b"hello through the proxy\n"
    assert ftp_proxy.connections == 1
    assert ftp_proxy.bytes_up > 0 and ftp_proxy.bytes_down > 0
    # QUIT: the server closes, the proxy passes the close on and finishes the connection itself.
    assert ftp_proxy.wait_until(lambda: ftp_proxy.open_connections == 0)


def test_passthrough_sftp_write(sftp_server: RunningServer, sftp_proxy: FaultProxy) -> None:
    data = os.urandom(100_000)
    with sftp_session(sftp_proxy, sftp_server) as sftp:
        sftp.putfo(io.BytesIO(data), sftp_server.remote_path("via-proxy.bin"))
    assert (sftp_server.root / "via-proxy.bin").read_bytes() == data
    assert sftp_proxy.connections == 1
    assert sftp_proxy.bytes_up > len(data)
    # The client closed first: the proxy passes the close on and finishes the connection.
    assert sftp_proxy.wait_until(lambda: sftp_proxy.open_connections == 0)


def test_blackhole_accepts_but_never_answers(ftp_proxy: FaultProxy) -> None:
    ftp_proxy.blackhole()
    ftp = ftplib.FTP(timeout=0.5)
    try:
        with pytest.raises(TimeoutError):
            ftp.connect(ftp_proxy.host, ftp_proxy.port)
        assert ftp.sock is not None  # the TCP connect itself succeeded; only the greeting never came
        ftp.sock.sendall(b"USER nobody\r\n")  # swallowed, still no answer
        with pytest.raises(TimeoutError):
            ftp.sock.recv(1)
    finally:
        ftp.close()
    assert ftp_proxy.connections == 1
    assert ftp_proxy.bytes_up == 0 and ftp_proxy.bytes_down == 0


def test_cut_after_up_during_sftp_upload(sftp_server: RunningServer, sftp_proxy: FaultProxy) -> None:
    cut = 300_000
    sftp_proxy.cut_after(cut, "up")
    data = os.urandom(2 * 1024 * 1024)
    with sftp_session(sftp_proxy, sftp_server) as sftp:
        assert sftp_proxy.bytes_up < cut  # logged in: the cut comes during the upload
        with pytest.raises(CUT_ERRORS):  # paramiko: EOFError
            sftp.putfo(io.BytesIO(data), sftp_server.remote_path("big.bin"))
    assert sftp_proxy.bytes_up == cut
    partial = sftp_server.root / "big.bin"
    assert not partial.exists() or partial.stat().st_size < len(data)


def test_cut_after_down_truncates_the_greeting(ftp_proxy: FaultProxy) -> None:
    ftp_proxy.cut_after(10, "down")
    ftp = ftplib.FTP(timeout=5)
    try:
        with pytest.raises(CUT_ERRORS):
            ftp.connect(ftp_proxy.host, ftp_proxy.port)
    finally:
        ftp.close()
    assert ftp_proxy.bytes_down == 10


def test_delay_slows_every_exchange(ftp_server: RunningServer, ftp_proxy: FaultProxy) -> None:
    ftp_proxy.delay(0.15)
    started = time.monotonic()
    # Greeting, USER, 331, PASS, 230: five messages in sequence, each held 0.15 s.
    with ftp_login(ftp_proxy, ftp_server):
        elapsed = time.monotonic() - started
    assert elapsed >= 0.7  # at least 0.75 s by construction; a little slack for clock rounding


def test_throttle_limits_the_rate(sftp_server: RunningServer, sftp_proxy: FaultProxy) -> None:
    sftp_proxy.throttle(100_000)
    data = os.urandom(200_000)
    started = time.monotonic()
    with sftp_session(sftp_proxy, sftp_server) as sftp:
        sftp.putfo(io.BytesIO(data), sftp_server.remote_path("slow.bin"))
        elapsed = time.monotonic() - started
    assert elapsed >= 1.5
    assert (sftp_server.root / "slow.bin").read_bytes() == data


def test_cut_all_breaks_open_connections_only(ftp_server: RunningServer, ftp_proxy: FaultProxy) -> None:
    with ftp_login(ftp_proxy, ftp_server) as ftp:
        ftp.voidcmd("NOOP")
        ftp_proxy.cut_all()
        with pytest.raises(CUT_ERRORS):
            ftp.voidcmd("NOOP")
    assert ftp_proxy.open_connections == 0
    # The mode is unchanged: a new connection works.
    with ftp_login(ftp_proxy, ftp_server) as ftp:
        ftp.voidcmd("NOOP")
    assert ftp_proxy.connections == 2


def test_closed_port_refuses() -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_port()), timeout=2)


def test_stop_resets_open_connections(ftp_server: RunningServer) -> None:
    proxy = FaultProxy(ftp_server.host, ftp_server.port).start()
    try:
        with ftp_login(proxy, ftp_server) as ftp:
            proxy.blackhole()
            with socket.create_connection((proxy.host, proxy.port), timeout=2) as silent:
                assert proxy.wait_until(lambda: proxy.connections == 2)
                proxy.stop()  # raises if a thread did not finish
                silent.settimeout(2)
                with pytest.raises(ConnectionResetError):
                    silent.recv(1)
            with pytest.raises(CUT_ERRORS):
                ftp.voidcmd("NOOP")
    finally:
        proxy.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=2)

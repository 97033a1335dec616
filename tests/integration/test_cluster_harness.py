"""The cluster harness checked on its own (``recording_servers.py``, ``cluster_harness.py``): what the
recording servers count, the STOR and RNTO they hold and release, the process found behind a
connection, and a PostgreSQL restart. The cluster tests trust these counts, so a harness bug must
not look like the product's.
"""

from __future__ import annotations

import ftplib
import io
import socket
import subprocess
import sys
import threading

import paramiko
import postgres
import pytest
from cluster_harness import connection_owner
from polling import eventually
from recording_servers import recording_ftp_server, recording_sftp_server

pytestmark = pytest.mark.integration


def _ftp(port: int, user: str, password: str) -> ftplib.FTP:
    client = ftplib.FTP()
    client.connect("127.0.0.1", port, timeout=10)
    client.login(user, password)
    return client


def test_the_ftp_server_counts_sessions_per_user_stores_and_renames() -> None:
    with recording_ftp_server(["d1", "d2"]) as server:
        first, second, third = (_ftp(server.port, user, server.password) for user in ("d1", "d1", "d2"))
        first.storbinary("STOR .a.part", io.BytesIO(b"abc"))
        first.rename(".a.part", "a")
        third.storbinary("STOR .b.part", io.BytesIO(b"b"))
        third.rename(".b.part", "b")
        # the server counts a session once it answered 230: poll
        eventually(lambda: server.sessions() == ({"d1": 2, "d2": 1}, {"d1": 2, "d2": 1}), "three sessions")
        first.quit()
        second.close()  # without QUIT, as a killed client does
        eventually(lambda: server.sessions()[0] == {"d1": 0, "d2": 1}, "the two sessions of d1 to close")
        again = _ftp(server.port, "d1", server.password)
        eventually(lambda: server.sessions() == ({"d1": 1, "d2": 1}, {"d1": 2, "d2": 1}), "a new session of d1")
        again.quit()
        third.quit()
        assert server.renamed() == {"d1/a": 1, "d2/b": 1}
        assert server.stored() == {"d1/.a.part": 1, "d2/.b.part": 1}
        assert (server.root / "d1" / "a").read_bytes() == b"abc"


def test_a_held_store_hangs_the_upload_and_names_the_connection() -> None:
    with recording_ftp_server(["d1"], bytes_per_second=200_000) as server:
        held = server.block_store("VIN1")
        client = _ftp(server.port, "d1", server.password)

        errors: list[Exception] = []

        def upload_until_cut() -> None:
            try:
                client.storbinary("STOR .VIN1.zip.part", io.BytesIO(b"x" * 100_000))
            except (EOFError, OSError) as exc:  # where the shutdown finds it: reading the reply, or sending
                errors.append(exc)

        upload = threading.Thread(target=upload_until_cut)
        upload.start()
        held.wait()
        assert (held.user, held.path, held.port) == ("d1", ".VIN1.zip.part", client.sock.getsockname()[1])
        assert server.stored() == {}
        assert not server.closed(held.port)
        client.sock.shutdown(socket.SHUT_RDWR)  # the client dies: the server cuts the held file
        upload.join(timeout=10)
        assert not upload.is_alive() and len(errors) == 1
        eventually(lambda: server.events("cut") and server.closed(held.port), "the held upload to be cut")
        # only the first one is held
        other = _ftp(server.port, "d1", server.password)
        other.storbinary("STOR .VIN1.zip.part", io.BytesIO(b"y" * 1000))
        other.quit()
        assert server.stored() == {"d1/.VIN1.zip.part": 1}


def test_a_held_store_released_reads_on_to_its_end() -> None:
    with recording_ftp_server(["d1"], bytes_per_second=400_000) as server:
        held = server.block_store(".f.part")
        client = _ftp(server.port, "d1", server.password)
        done: list[str] = []
        data = io.BytesIO(b"x" * 300_000)
        upload = threading.Thread(target=lambda: done.append(client.storbinary("STOR .f.part", data)))
        upload.start()
        held.wait()
        held.release()
        upload.join(timeout=10)
        assert done and done[0].startswith("226")
        # pyftpdlib answers 226, then tells the handler the file arrived
        eventually(lambda: server.stored() == {"d1/.f.part": 1}, "the released upload to be counted")
        assert (server.root / "d1" / ".f.part").stat().st_size == 300_000
        client.quit()


def test_a_held_rename_is_done_but_never_answered() -> None:
    with recording_ftp_server(["d1"]) as server:
        held = server.block_rename("final.zip")
        client = _ftp(server.port, "d1", server.password)
        client.storbinary("STOR .final.zip.part", io.BytesIO(b"z"))
        client.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.rename(".final.zip.part", "final.zip")
        held.wait(timeout=0)
        assert held.path == "final.zip"
        assert (server.root / "d1" / "final.zip").read_bytes() == b"z"
        assert server.renamed() == {"d1/final.zip": 1}
        client.close()


def test_a_rename_sent_by_a_client_already_gone_is_counted_at_its_path() -> None:
    # a worker killed with RNFR and RNTO sent in one write: the server renames after the client left,
    # and its "250" finds the session closed (pyftpdlib has dropped the session's file system then)
    with recording_ftp_server(["d1"]) as server:
        (server.root / "d1" / ".a.part").write_bytes(b"a")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            replies = raw.makefile("rb")
            raw.sendall(f"USER d1\r\nPASS {server.password}\r\n".encode())
            while not replies.readline().startswith(b"230"):
                pass
            raw.sendall(b"RNFR .a.part\r\nRNTO a\r\n")
            replies.close()
        eventually(lambda: server.renamed(), "the rename counted")
        assert server.renamed() == {"d1/a": 1}
        assert (server.root / "d1" / "a").read_bytes() == b"a"


def test_the_owner_of_a_connection_is_found_among_processes() -> None:
    with recording_ftp_server(["d1"]) as server:
        code = (
            "import ftplib, sys; c = ftplib.FTP(); c.connect('127.0.0.1', int(sys.argv[1]));"
            " c.login('d1', sys.argv[2]); print(c.sock.getsockname()[1], flush=True); sys.stdin.read()"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(server.port), server.password],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            assert connection_owner(port, server.port, [1, child.pid]) == child.pid
            assert connection_owner(port, server.port, [1]) is None
        finally:
            child.kill()
            child.wait()


def test_the_sftp_server_logs_sessions_and_renames() -> None:
    with recording_sftp_server() as sftp:
        server = sftp.server
        transports = []
        for n in range(2):
            transport = paramiko.Transport((server.host, server.port))
            transport.connect(username=server.username, password=server.password)
            transports.append(transport)
            client = paramiko.SFTPClient.from_transport(transport)
            assert client is not None
            with client.open(f"{server.home}/.f{n}.part", "w") as remote:
                remote.write(b"data")
            client.posix_rename(f"{server.home}/.f{n}.part", f"{server.home}/f{n}")
        eventually(lambda: sftp.sessions() == (2, 2), "two SFTP sessions")
        for transport in transports:
            transport.close()
        eventually(lambda: sftp.sessions() == (0, 2), "the SFTP sessions to close")
        assert sftp.renamed() == {"f0": 1, "f1": 1}


def test_postgresql_restart_cuts_connections_and_serves_again_on_the_same_port() -> None:
    """What the cluster's restart test relies on (a server of its own: the session's one is shared)."""
    import psycopg

    if not postgres.available():
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    with postgres.postgresql_server() as server:
        url = server.url(server.new_database().rsplit("/", 1)[1], password=True)
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE t (n int)")
            server.restart()
            with pytest.raises(psycopg.OperationalError):
                db.execute("SELECT 1")
        with psycopg.connect(url, autocommit=True) as db:
            assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)

"""Shared fixtures: real servers on 127.0.0.1 (see ``servers.py``) and a thread-leak check.

Server fixtures (function scope) yield a ``servers.RunningServer`` whose ``root`` is empty when the
test starts: ``ftp_server``, ``ftps_server``, ``ftps_implicit_server``, ``sftp_server``,
``vsftpd_ftps_server`` and ``any_server`` (parametrized over the first four). Each server process or
thread lives for the whole session (``*_session`` fixtures, usable from wider-scoped fixtures; their
root is shared, not cleaned) and is stopped at the end.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
import servers
from servers import RunningServer

#: how long a test's threads get to finish after it (paramiko joins its thread lazily)
THREAD_GRACE = 2.0

#: threads of the session-scoped servers: they outlive the test that happened to start them
SESSION_THREADS: set[threading.Thread] = set()


@contextlib.contextmanager
def session_server(server: contextlib.AbstractContextManager[RunningServer]) -> Iterator[RunningServer]:
    """Enter a server for the whole session and exempt its threads from the leak check."""
    before = set(threading.enumerate())
    with server as running:
        SESSION_THREADS.update(set(threading.enumerate()) - before)
        yield running


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running (an unclosed transport, a forgotten server)."""
    before = set(threading.enumerate())
    yield
    new = [t for t in threading.enumerate() if t not in before and t not in SESSION_THREADS]
    deadline = time.monotonic() + THREAD_GRACE
    for thread in new:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    leaked = [t for t in new if t.is_alive()]
    if leaked:
        pytest.fail(f"the test leaked {len(leaked)} thread(s): {leaked}")


# --- session-scoped servers


@pytest.fixture(scope="session")
def ftp_server_session() -> Iterator[RunningServer]:
    """Plain FTP (pyftpdlib)."""
    with session_server(servers.pyftpdlib_server("ftp")) as server:
        yield server


@pytest.fixture(scope="session")
def ftps_server_session() -> Iterator[RunningServer]:
    """Explicit FTPS (pyftpdlib TLS_FTPHandler), TLS required on control and data channels."""
    with session_server(servers.pyftpdlib_server("ftps")) as server:
        yield server


@pytest.fixture(scope="session")
def ftps_implicit_server_session() -> Iterator[RunningServer]:
    """Implicit FTPS (pyftpdlib, TLS from the first byte), TLS required on the data channel."""
    with session_server(servers.pyftpdlib_server("ftps+implicit")) as server:
        yield server


@pytest.fixture(scope="session")
def sftp_server_session() -> Iterator[RunningServer]:
    """OpenSSH sshd with internal-sftp, a temporary user, password and key login."""
    with session_server(servers.openssh_server()) as server:
        yield server


@pytest.fixture(scope="session")
def vsftpd_ftps_server_session() -> Iterator[RunningServer]:
    """vsftpd, explicit FTPS with require_ssl_reuse=YES and TLS forced for logins and data."""
    with session_server(servers.vsftpd_ftps_server()) as server:
        yield server


# --- per-test views with an empty root


def _fresh(server: RunningServer) -> RunningServer:
    server.clear_root()
    return server


@pytest.fixture
def ftp_server(ftp_server_session: RunningServer) -> RunningServer:
    return _fresh(ftp_server_session)


@pytest.fixture
def ftps_server(ftps_server_session: RunningServer) -> RunningServer:
    return _fresh(ftps_server_session)


@pytest.fixture
def ftps_implicit_server(ftps_implicit_server_session: RunningServer) -> RunningServer:
    return _fresh(ftps_implicit_server_session)


@pytest.fixture
def sftp_server(sftp_server_session: RunningServer) -> RunningServer:
    return _fresh(sftp_server_session)


@pytest.fixture
def vsftpd_ftps_server(vsftpd_ftps_server_session: RunningServer) -> RunningServer:
    return _fresh(vsftpd_ftps_server_session)


ANY_SERVER = {
    "ftp": "ftp_server",
    "ftps": "ftps_server",
    "ftps-implicit": "ftps_implicit_server",
    "sftp": "sftp_server",
}


@pytest.fixture(params=list(ANY_SERVER), ids=list(ANY_SERVER))
def any_server(request: pytest.FixtureRequest) -> RunningServer:
    """Each of the four protocol servers in turn."""
    return request.getfixturevalue(ANY_SERVER[request.param])

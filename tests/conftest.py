"""Shared fixtures: real servers on 127.0.0.1 (see ``servers.py``, ``servers_ftpd.py``) and a thread-leak check.

Server fixtures (function scope) yield a ``servers.RunningServer`` whose ``root`` is empty when the
test starts: ``ftp_server``, ``ftps_server``, ``ftps_implicit_server`` (pyftpdlib), ``sftp_server``
(OpenSSH), ``vsftpd_ftps_server`` and ``any_server``, parametrized over every server of the
conformance matrix (``MATRIX``). Each server process or thread lives for the whole session
(``*_session`` fixtures, usable from wider-scoped fixtures; their root is shared, not cleaned) and
is stopped at the end. ``idle_server`` starts a server of the matrix for one test, with a two-second
idle timeout.

PostgreSQL (``postgres.py``): ``postgresql_session`` is one server for the session (skipped where
PostgreSQL is not installed; ``.ci/run`` installs it); ``pg_url`` a new empty database for one
test, its URL without the password, with ``PGPASSWORD`` set for the test.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import postgres
import pytest
import servers
import servers_ftpd
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


#: loggers the command line sets up (``logs.setup_logging``): handlers of their own, no propagation
_CONFIGURED_LOGGERS = ("ftpexport", "paramiko")


@pytest.fixture(autouse=True)
def restored_loggers() -> Iterator[None]:
    """Give each test the loggers as they were before it: a command run in process sets up
    ftpexport's logging (its own handler, no propagation to the root logger), which would keep the
    records of every later test away from ``caplog``."""
    saved = []
    for name in _CONFIGURED_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
    yield
    for logger, handlers, level, propagate in saved:
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


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


def _pyftpdlib(scheme: str, idle_timeout: int | None = None) -> contextlib.AbstractContextManager[RunningServer]:
    return servers.pyftpdlib_server(scheme, **({"timeout": idle_timeout} if idle_timeout else {}))


ServerFactory = Callable[..., contextlib.AbstractContextManager[RunningServer]]

#: The conformance matrix: test id -> (the session fixture of that server, how to start one more
#: with keyword arguments such as ``idle_timeout``). What each server needed in its configuration
#: is in its factory's docstring and in the README's Development section.
MATRIX: dict[str, tuple[str, ServerFactory, dict[str, Any]]] = {
    "pyftpdlib-ftp": ("ftp_server_session", _pyftpdlib, {"scheme": "ftp"}),
    "pyftpdlib-ftps": ("ftps_server_session", _pyftpdlib, {"scheme": "ftps"}),
    "pyftpdlib-ftps-implicit": ("ftps_implicit_server_session", _pyftpdlib, {"scheme": "ftps+implicit"}),
    "vsftpd-ftp": ("vsftpd_ftp_server_session", servers_ftpd.vsftpd_server, {"scheme": "ftp"}),
    "vsftpd-ftps": ("vsftpd_ftps_server_session", servers_ftpd.vsftpd_server, {"scheme": "ftps"}),
    "proftpd-ftp": ("proftpd_ftp_server_session", servers_ftpd.proftpd_server, {"scheme": "ftp"}),
    "proftpd-ftps": ("proftpd_ftps_server_session", servers_ftpd.proftpd_server, {"scheme": "ftps"}),
    "pureftpd-ftp": ("pureftpd_ftp_server_session", servers_ftpd.pureftpd_server, {"scheme": "ftp"}),
    "pureftpd-ftps": ("pureftpd_ftps_server_session", servers_ftpd.pureftpd_server, {"scheme": "ftps"}),
    "openssh-sftp": ("sftp_server_session", servers.openssh_server, {}),
    "openssh-sftp-norename": (
        "sftp_norename_server_session",
        servers.openssh_server,
        {"refuse": ("rename", "posix-rename")},
    ),
}


def _matrix_session_fixture(test_id: str, doc: str) -> Any:
    name, factory, arguments = MATRIX[test_id]

    @pytest.fixture(scope="session", name=name)
    def fixture() -> Iterator[RunningServer]:
        with session_server(factory(**arguments)) as server:
            yield server

    fixture.__doc__ = doc
    return fixture


vsftpd_ftp_server_session = _matrix_session_fixture("vsftpd-ftp", "vsftpd, plain FTP.")
vsftpd_ftps_server_session = _matrix_session_fixture(
    "vsftpd-ftps", "vsftpd, explicit FTPS with require_ssl_reuse=YES and TLS forced for logins and data."
)
proftpd_ftp_server_session = _matrix_session_fixture("proftpd-ftp", "ProFTPD, plain FTP, a virtual user.")
proftpd_ftps_server_session = _matrix_session_fixture(
    "proftpd-ftps", "ProFTPD, explicit FTPS (mod_tls, TLSRequired on, session reuse required)."
)
pureftpd_ftp_server_session = _matrix_session_fixture("pureftpd-ftp", "Pure-FTPd, plain FTP, a PureDB user.")
pureftpd_ftps_server_session = _matrix_session_fixture("pureftpd-ftps", "Pure-FTPd, explicit FTPS (--tls 3).")
sftp_norename_server_session = _matrix_session_fixture(
    "openssh-sftp-norename", "OpenSSH whose SFTP server refuses renames (internal-sftp -P rename,posix-rename)."
)


@pytest.fixture(scope="session")
def pureftpd_norename_server_session() -> Iterator[RunningServer]:
    """Pure-FTPd that refuses renames (--norename), plain FTP: for the refused-rename tests, not in MATRIX."""
    with session_server(servers_ftpd.pureftpd_server("ftp", refuse_rename=True)) as server:
        yield server


@pytest.fixture(scope="session")
def postgresql_session() -> Iterator[postgres.PostgresServer]:
    """PostgreSQL (the Debian package's initdb and pg_ctl, as the postgres user), fsync off."""
    if not postgres.available():
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    with postgres.postgresql_server() as server:
        yield server


@pytest.fixture
def pg_url(postgresql_session: postgres.PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty database for this test: its URL without the password; PGPASSWORD is set."""
    monkeypatch.setenv("PGPASSWORD", postgresql_session.password)
    return postgresql_session.new_database()


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


@pytest.fixture
def sftp_norename_server(sftp_norename_server_session: RunningServer) -> RunningServer:
    return _fresh(sftp_norename_server_session)


@pytest.fixture
def pureftpd_norename_server(pureftpd_norename_server_session: RunningServer) -> RunningServer:
    return _fresh(pureftpd_norename_server_session)


@pytest.fixture(params=list(MATRIX), ids=list(MATRIX))
def any_server(request: pytest.FixtureRequest) -> RunningServer:
    """Each server of the conformance matrix in turn, with an empty root."""
    return _fresh(request.getfixturevalue(MATRIX[request.param][0]))


@pytest.fixture(params=list(MATRIX), ids=list(MATRIX))
def idle_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A server of the matrix of its own, that closes a connection idle for two seconds (Pure-FTPd: a minute).

    Two, not one: on a loaded machine (the whole suite on 2 cores) a new connection to ProFTPD once
    took over a second to log in, and the server closed it (421 Idle timeout) before the test began.
    """
    _, factory, arguments = MATRIX[request.param]
    with factory(**arguments, idle_timeout=2) as server:
        yield server

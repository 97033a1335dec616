"""A real PostgreSQL for the tests and the benchmarks: ``initdb`` and ``pg_ctl`` as the ``postgres``
user (they refuse root) in a temporary folder, on 127.0.0.1 with a free port, ``fsync=off``.

``postgresql_server()`` yields a ``PostgresServer``: ``new_database()`` creates an empty database
owned by the role ``ftpexport`` (password login over TCP, scram-sha-256) and returns its URL
without the password (``PGPASSWORD`` or ``url(..., password=True)`` give it); ``restart()``,
``stop()`` and ``start()`` for the tests of a database that goes away. Administration goes over the
server's own Unix socket in its temporary folder, as ``postgres``, with no password.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from daemons import HOST, free_port

#: the Debian package's programs (pg_ctl and initdb are not on root's PATH there)
_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
USER = "ftpexport"


def _program(name: str) -> str:
    for folder in _BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the Debian package postgresql (.ci/run does)")
    return found


def available() -> bool:
    """True when PostgreSQL's server programs are installed."""
    try:
        _program("initdb")
        pwd.getpwnam("postgres")
    except (RuntimeError, KeyError):
        return False
    return True


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder (see the module's docstring)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.socket_dir = base / "run"
        self.log = base / "postgres.log"
        self.host = HOST
        self.port = free_port()
        self.user = USER
        self.password = "pg-" + secrets.token_urlsafe(12)
        self._names = itertools.count(1)

    # --- as postgres

    def _as_postgres(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            check=check,
            capture_output=True,
            text=True,
            cwd=self.base,
        )

    def init(self) -> None:
        for folder in (self.base, self.socket_dir):
            folder.mkdir(exist_ok=True)
            shutil.chown(folder, "postgres", "postgres")
        self.base.chmod(0o700)
        self._as_postgres(_program("initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                          "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")  # fmt: skip
        settings = {
            "listen_addresses": f"'{HOST}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("".join(f"{key} = {value}\n" for key, value in settings.items()))

    def start(self) -> None:
        result = self._as_postgres(_program("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                                   "-t", "60", "start", check=False)  # fmt: skip
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stdout}{result.stderr}\n{log[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(_program("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        """Stop (every connection cut) and start again on the same port."""
        self.stop()
        self.start()

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the Unix socket; its output (unaligned, tuples only)."""
        result = self._as_postgres(_program("psql"), "-h", str(self.socket_dir), "-p", str(self.port),
                                   "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atq",
                                   "-c", sql, check=False)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()} (SQL: {sql})")
        return result.stdout

    def create_role(self) -> None:
        self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")

    # --- for the tests

    def new_database(self) -> str:
        """A new empty database owned by ``ftpexport``; its URL, without the password."""
        name = f"ledger_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} OWNER {self.user}")
        return self.url(name)

    def url(self, database: str, *, password: bool = False) -> str:
        """``postgresql://ftpexport@127.0.0.1:PORT/DATABASE``, with the password inside when asked."""
        credentials = f"{self.user}:{self.password}" if password else self.user
        return f"postgresql://{credentials}@{self.host}:{self.port}/{database}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to log in with a URL without the password (libpq's ``PGPASSWORD``)."""
        return {"PGPASSWORD": self.password}


@contextlib.contextmanager
def postgresql_server(parent: Path | None = None) -> Iterator[PostgresServer]:
    """A PostgreSQL started for the block and removed after it (see the module's docstring)."""
    base = Path(tempfile.mkdtemp(prefix="ftpexport-pg-", dir=parent))
    server = PostgresServer(base)
    try:
        server.init()
        server.start()
        server.create_role()
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)

"""The PostgreSQL database of a shared ledger: its connections, transactions and errors.

Connections come from a ``psycopg_pool`` pool, checked before each use. libpq's own conventions
give the password (``PGPASSWORD``, ``~/.pgpass``, or written in the URL) and TLS (``sslmode=``).

A database that goes away (a restart, a failover) is waited for: an operation that loses its
connection is run again over a fresh one for up to ``retry_for`` seconds, then it is a
``StateError`` naming the ledger and what to do. A URL that cannot work (a password or user
refused, a database or host unknown) is a ``ConfigError`` at once. The password is never shown:
the URL appears as ``display_state`` shows it, and libpq's messages name no password.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool, PoolTimeout

from ...errors import ConfigError, StateError
from .. import state_passwords
from ..sql import Queries

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: seconds an operation is tried again over fresh connections while the database cannot be reached
RETRY_FOR = 30.0
#: seconds before the first try again; each next wait doubles, up to 1 s
FIRST_DELAY = 0.05
#: connections one process keeps to the database at most (the exporter's threads share them)
POOL_SIZE = 10

#: per session: the takeover scan (``pending_record_paths``) sorts the whole backlog in memory
_SESSION = "-c work_mem=32MB"
#: SQLSTATE classes and codes of a database that went away or cannot take writes for a moment:
#: 08 connection exception, 57P admin shutdown / crash / cannot connect now, 40 a transaction
#: rolled back (deadlock, serialization), 25006 read-only (a standby during a failover)
_TRANSIENT_STATES = ("08", "57P", "40", "25006")
#: libpq's words for a URL that cannot work whatever we wait for, and what to do about each
_CONFIG_ERRORS = (
    (re.compile(r"password authentication failed|no password supplied|authentication failed", re.I),
     "the database refused the user name or password",
     "check the user in the URL and its password (PGPASSWORD, ~/.pgpass or the URL)"),
    (re.compile(r'role "[^"]*" does not exist', re.I),
     "the database knows no such user", "check the user name in the URL"),
    (re.compile(r'database "[^"]*" does not exist', re.I),
     "the database does not exist", "create it (createdb) or correct the database name in the URL"),
    (re.compile(r"could not translate host name|Name or service not known|nodename nor servname", re.I),
     "the host name is unknown", "correct the host in the URL"),
    (re.compile(r"invalid (URI|connection option|sslmode|integer value)|missing \"=\"", re.I),
     "the URL is not valid", "write it as postgresql://USER@HOST:PORT/DATABASE"),
)  # fmt: skip


class Row(dict[str, Any]):
    """A row read back: ``row["column"]``, ``row[0]`` and ``dict(row)``, like ``sqlite3.Row``."""

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)


def _rows(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    names = [column.name for column in cursor.description or ()]
    return lambda values: Row(zip(names, values, strict=True))


class Database:
    """A connection in a transaction, running the shared queries: ``?`` parameters become ``%s``."""

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Row]:
        return self.conn.execute(_dialect(sql), parameters)


@functools.lru_cache(maxsize=512)
def _dialect(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def reason_of(exc: BaseException) -> str:
    """libpq's first line of an error, without psycopg's prefix (it names no password)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.removeprefix("connection failed: ")


def transient(exc: BaseException) -> bool:
    """True for an error that a fresh connection, a moment later, may not meet again."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(_TRANSIENT_STATES)


class Connection(Queries):
    """The connections of one process to the ledger's database (see the module's docstring)."""

    def __init__(self, url: str, location: str, *, retry_for: float = RETRY_FOR, pool_size: int = POOL_SIZE) -> None:
        self._location = location
        self.retry_for = retry_for
        self._url = url  # with its password when the URL has one: never shown (location is what is)
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            kwargs={"row_factory": _rows, "connect_timeout": 10, "application_name": "ftpexport", "options": _SESSION},
            min_size=1,
            max_size=pool_size,
            open=False,
            check=ConnectionPool.check_connection,
            name="ftpexport-ledger",
            timeout=min(5.0, retry_for),  # a wait for a connection is one try of ``retrying``
            reconnect_timeout=retry_for,
        )

    @property
    def location(self) -> str:
        """The URL without its password."""
        return self._location

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"

    def connect_once(self, prepare: Callable[[psycopg.Connection[Row]], None]) -> None:
        """The first connection, over which ``prepare`` runs (the schema), then the pool opens. A
        URL that cannot work is a ``ConfigError``; a database that does not answer is waited for."""

        try:
            conninfo_to_dict(self._url)
        except psycopg.ProgrammingError as exc:  # libpq cannot parse it
            reason = reason_of(exc)
            for secret in state_passwords(self._url):
                reason = reason.replace(secret, "***").replace(unquote(secret), "***")
            raise ConfigError(
                f"--state {self.location}: the URL is not valid: {reason}",
                hint="write it as postgresql://USER@HOST:PORT/DATABASE",
            ) from None

        def first() -> None:
            try:
                with psycopg.connect(self._url, row_factory=_rows, connect_timeout=10) as conn:
                    prepare(conn)
            except psycopg.OperationalError as exc:
                if (refusal := _config_error(exc, self.location)) is not None:
                    raise refusal from None
                raise

        self.retrying(first)
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    def retrying(self, operation: Callable[[], T]) -> T:
        """``operation()``, run again over fresh connections while the database cannot be reached,
        for up to ``retry_for`` seconds; then a ``StateError``."""
        deadline = time.monotonic() + self.retry_for
        delay = FIRST_DELAY
        while True:
            try:
                return operation()
            except (psycopg.Error, PoolTimeout) as exc:
                if isinstance(exc, psycopg.errors.DiskFull):
                    raise StateError(
                        f"{self.location}: the database server's disk is full: {reason_of(exc)}",
                        hint="free space on the PostgreSQL server; the deliveries not recorded stay pending",
                    ) from None
                if not transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StateError(
                        f"{self.location}: cannot reach the ledger's database (tried for {self.retry_for:.0f} s):"
                        f" {reason_of(exc)}",
                        hint="check that PostgreSQL is running and that this host can reach it; nothing is"
                        " renamed on a server while the ledger cannot record it, and what is pending stays pending",
                    ) from None
                # one warning per outage; its further tries are debug lines
                level = logging.WARNING if delay == FIRST_DELAY else logging.DEBUG
                log.log(level, f"ledger database unreachable, trying again for up to {self.retry_for:.0f} s",
                        extra={"state": self.location, "error": reason_of(exc)})  # fmt: skip
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @contextmanager
    def _transaction(self) -> Iterator[Database]:
        with self._pool.connection() as conn:
            yield Database(conn)

    _reading = _transaction

    def _insert(self, db: Database, sql: str, parameters: Sequence[Any]) -> int:  # type: ignore[override]
        return int(db.execute(sql + " RETURNING id", parameters).fetchone()[0])


def _config_error(exc: psycopg.OperationalError, location: str) -> ConfigError | None:
    reason = reason_of(exc)
    for pattern, what, hint in _CONFIG_ERRORS:
        if pattern.search(str(exc)):
            return ConfigError(f"--state {location}: cannot open the ledger: {what} ({reason})", hint=hint)
    return None


def retried(method: Callable[P, T]) -> Callable[P, T]:
    """A method of a ``Connection`` (or of an object with one as ``_connection``) run through ``retrying``."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        connection: Connection = getattr(args[0], "_connection", args[0])
        return connection.retrying(lambda: method(*args, **kwargs))

    return run

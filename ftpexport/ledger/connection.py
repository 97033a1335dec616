"""The SQLite file of the ledger: opening it (0600, WAL, the schema), its transactions, its errors.

The file and its companions (``-wal``, ``-shm``) are created 0600. A full disk, a read-only file
system or an I/O error becomes a ``StateError`` naming the file and what to do; a file that is not
a ledger, or one of a newer ftpexport, a ``ConfigError``.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StateError
from ..private import FULL_ERRNOS, create_private, disk_hint, narrow, private_folder
from .schema import check_version, create_or_migrate
from .sql import Queries, filters, to_delivery

__all__ = ["Connection", "filters", "to_delivery"]

#: SQLite's primary result codes of a disk that is full, read-only or failing (or a file that cannot be made)
_DISK_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN})


class Connection(Queries):
    """One SQLite file, shared between threads: one connection behind a lock, transactions, errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            private_folder(path.parent)
            create_private(path)  # SQLite gives its -wal, -shm and -journal files the mode of this one
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise self._open_error(exc) from exc
        try:
            self._db.row_factory = sqlite3.Row
            version = check_version(self._db, path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for companion in ("-wal", "-shm", "-journal"):
                narrow(path.with_name(path.name + companion))  # left by an older ftpexport with its 0644
            create_or_migrate(self._db, version)
        except BaseException as exc:
            self._db.close()  # a refused ledger must not stay open (and locked) behind the error
            if isinstance(exc, OSError | sqlite3.Error):
                raise self._open_error(exc) from exc
            raise
        self._lock = threading.Lock()

    def _open_error(self, exc: OSError | sqlite3.Error) -> ConfigError | StateError:
        """A full or read-only disk is a ``StateError`` (exit 1); anything else a ``ConfigError`` (exit 2)."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"{self.path}: cannot open the ledger: {reason}"
        full = isinstance(exc, OSError) and exc.errno in FULL_ERRNOS | {errno.EIO}
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if full or code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY):
            return StateError(message, hint=disk_hint(self.path.parent))
        return ConfigError(message, hint="check --state")

    def _failure(self, exc: sqlite3.Error, doing: str) -> StateError | None:
        """``exc`` as a ``StateError`` when the disk is at fault; None for anything else (a bug)."""
        if (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF in _DISK_CODES:
            return StateError(f"{self.path}: cannot {doing} the ledger: {exc}", hint=disk_hint(self.path.parent))
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._rollback()
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                # a COMMIT refused for a full disk may leave the transaction open: the next one must start clean
                self._rollback()
                failure = self._failure(exc, "write")
                if failure is None:
                    raise
                raise failure from exc

    def _rollback(self) -> None:
        if self._db.in_transaction:
            with suppress(sqlite3.Error):  # SQLite may have rolled it back itself
                self._db.execute("ROLLBACK")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                failure = self._failure(exc, "read")
                if failure is None:
                    raise
                raise failure from exc

    def _insert(self, db: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> int:
        return int(db.execute(sql, parameters).lastrowid or 0)

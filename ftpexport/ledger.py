"""The ledger: a SQLite file of deliveries and attempts; the only module that speaks SQL.

A delivery is one (record id, content hash, destination). It is ``pending`` until every file is
on the server, then ``delivered``; ``failed`` keeps the last error; ``superseded`` marks an
undelivered version of a record that a newer version replaced. Every attempt is kept, so the
ledger answers "what was sent to whom, when".
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

Status = Literal["pending", "delivered", "failed", "superseded"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id             INTEGER PRIMARY KEY,
    record_id      TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    destination    TEXT NOT NULL,
    record_path    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'superseded')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    remote_paths   TEXT NOT NULL DEFAULT '[]',
    bytes          INTEGER NOT NULL DEFAULT 0,
    correlation_id TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    delivered_at   TEXT,
    UNIQUE (record_id, content_hash, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, client_id);
CREATE INDEX IF NOT EXISTS deliveries_by_destination ON deliveries (destination, record_id);
CREATE TABLE IF NOT EXISTS attempts (
    id             INTEGER PRIMARY KEY,
    delivery_id    INTEGER NOT NULL REFERENCES deliveries (id),
    correlation_id TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    result         TEXT,
    error          TEXT,
    bytes          INTEGER
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON attempts (delivery_id);
"""


def now() -> str:
    """The current time, ISO 8601 with its UTC offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Delivery:
    """One row of the ledger."""

    id: int
    record_id: str
    content_hash: str
    client_id: str
    destination: str
    record_path: str
    status: Status
    attempts: int
    last_error: str | None
    remote_paths: tuple[str, ...]
    bytes: int
    correlation_id: str | None
    created_at: str
    updated_at: str
    delivered_at: str | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**self.__dict__, "remote_paths": list(self.remote_paths)}


class Ledger:
    """The delivery ledger in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"{path}: cannot open the ledger: {exc}", hint="check --state") from exc
        try:
            self._db.row_factory = sqlite3.Row
            # the version first: a ledger of a newer ftpexport is left exactly as it is
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{path}: the ledger was written by a newer ftpexport (schema {version})",
                    hint="upgrade ftpexport, or use another --state file",
                )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException as exc:
            self._db.close()  # a refused ledger must not stay open (and locked) behind the error
            if isinstance(exc, sqlite3.Error):
                raise ConfigError(f"{path}: cannot open the ledger: {exc}", hint="check --state") from exc
            raise
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def find(self, record_id: str, content_hash: str, destination: str) -> Delivery | None:
        """The delivery of this version of a record to a destination, if the ledger has it."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM deliveries WHERE record_id = ? AND content_hash = ? AND destination = ?",
                (record_id, content_hash, destination),
            ).fetchone()
        return _delivery(row) if row else None

    def open_delivery(
        self, *, record_id: str, content_hash: str, client_id: str, destination: str, record_path: str
    ) -> Delivery:
        """The delivery row for this version, created pending if new; older undelivered versions
        of the same record to the same destination are marked superseded."""
        stamp = now()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO deliveries (record_id, content_hash, client_id, destination, record_path, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)"
                " ON CONFLICT (record_id, content_hash, destination) DO UPDATE SET record_path = excluded.record_path",
                (record_id, content_hash, client_id, destination, record_path, stamp, stamp),
            )
            db.execute(
                "UPDATE deliveries SET status = 'superseded', updated_at = ? WHERE record_id = ?"
                " AND destination = ? AND content_hash != ? AND status IN ('pending', 'failed')",
                (stamp, record_id, destination, content_hash),
            )
            row = db.execute(
                "SELECT * FROM deliveries WHERE record_id = ? AND content_hash = ? AND destination = ?",
                (record_id, content_hash, destination),
            ).fetchone()
        return _delivery(row)

    def start_attempt(self, delivery_id: int, correlation_id: str) -> int:
        """Record that an attempt begins; returns the attempt id."""
        stamp = now()
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = 'pending', attempts = attempts + 1, correlation_id = ?,"
                " updated_at = ? WHERE id = ?",
                (correlation_id, stamp, delivery_id),
            )
            cursor = db.execute(
                "INSERT INTO attempts (delivery_id, correlation_id, started_at) VALUES (?, ?, ?)",
                (delivery_id, correlation_id, stamp),
            )
        return int(cursor.lastrowid or 0)

    def succeed(self, delivery_id: int, attempt_id: int, remote_paths: list[str], sent: int) -> None:
        """Mark the delivery done: every file is on the server under its final name."""
        stamp = now()
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = 'delivered', last_error = NULL, remote_paths = ?, bytes = ?,"
                " updated_at = ?, delivered_at = ? WHERE id = ?",
                (json.dumps(remote_paths), sent, stamp, stamp, delivery_id),
            )
            db.execute(
                "UPDATE attempts SET finished_at = ?, result = 'delivered', bytes = ? WHERE id = ?",
                (stamp, sent, attempt_id),
            )

    def fail(self, delivery_id: int, attempt_id: int, error: str, *, final: bool, sent: int = 0) -> None:
        """Record a failed attempt; ``final`` parks the delivery as failed, else it stays pending."""
        stamp = now()
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = ?, last_error = ?, updated_at = ? WHERE id = ?",
                ("failed" if final else "pending", error, stamp, delivery_id),
            )
            db.execute(
                "UPDATE attempts SET finished_at = ?, result = 'failed', error = ?, bytes = ? WHERE id = ?",
                (stamp, error, sent, attempt_id),
            )

    def deliveries(
        self, *, status: Status | None = None, client_id: str | None = None, limit: int | None = None
    ) -> list[Delivery]:
        """Deliveries, newest first, optionally filtered."""
        query = "SELECT * FROM deliveries WHERE 1 = 1"
        params: list[Any] = []
        if status is not None:
            query += " AND status = ?"
            params.append(status)
        if client_id is not None:
            query += " AND client_id = ?"
            params.append(client_id)
        query += " ORDER BY updated_at DESC, id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [_delivery(row) for row in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{client_id: {status: count}}``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT client_id, status, COUNT(*) AS n FROM deliveries GROUP BY client_id, status ORDER BY client_id"
            ).fetchall()
        result: dict[str, dict[str, int]] = {}
        for row in rows:
            result.setdefault(row["client_id"], {})[row["status"]] = row["n"]
        return result

    def attempts(self, delivery_id: int) -> list[dict[str, Any]]:
        """The attempts of one delivery, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM attempts WHERE delivery_id = ? ORDER BY id", (delivery_id,)
            ).fetchall()
        return [dict(row) for row in rows]


def _delivery(row: sqlite3.Row) -> Delivery:
    values = dict(row)
    values["remote_paths"] = tuple(json.loads(values["remote_paths"]))
    return Delivery(**values)

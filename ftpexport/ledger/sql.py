"""What the query classes of the ledger (deliveries.py, journal.py, records.py, outbox.py,
reports.py) need of a backend: transactions, readings and the id of a row inserted.

The queries are written once, in the SQL that SQLite and PostgreSQL both speak, with ``?`` for a
parameter; a backend's connection (``connection.py`` for SQLite, ``postgres/connection.py``) runs
them. Rows read back answer ``row["column"]``, ``row[0]`` and ``dict(row)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from typing import Any, Protocol

from .rows import Delivery, Notification

#: the columns of ``deliveries`` a ``Delivery`` has, and those of ``notifications`` a ``Notification`` has
DELIVERY_COLUMNS = ", ".join(field.name for field in fields(Delivery))
NOTIFICATION_COLUMNS = ", ".join(Notification.__annotations__)


class Cursor(Protocol):
    """What a query answers (``sqlite3.Cursor``, or the PostgreSQL backend's cursor)."""

    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """Where a query runs: ``execute(sql, params)`` with ``?`` parameters."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


class Queries:
    """The base of the query classes: a backend's connection class provides these three."""

    def _transaction(self) -> AbstractContextManager[Database]:
        """One transaction: committed at the end of the block, rolled back on an error."""
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Database]:
        """One reading (a consistent view where the backend gives one)."""
        raise NotImplementedError

    def _insert(self, db: Database, sql: str, parameters: Sequence[Any]) -> int:
        """Run an INSERT of one row into a table with an ``id`` column; that row's id."""
        raise NotImplementedError

    def _select_deliveries(self, condition: str, parameters: Sequence[Any]) -> list[Delivery]:
        """The deliveries ``WHERE condition`` (its ORDER BY and LIMIT included), read in one go."""
        with self._reading() as db:
            rows = db.execute(f"SELECT * FROM deliveries WHERE {condition}", parameters).fetchall()  # noqa: S608
        return [to_delivery(row) for row in rows]

    # --- where a shared ledger (PostgreSQL) adds its leases; a ledger one process holds has none

    #: added to the WHERE of ``pending_record_paths`` (``d`` is the delivery): only those claimable now
    _claimable = ""
    #: added to the WHERE of ``close_interrupted`` (``a`` is the attempt): only those no live lease holds
    _unheld = ""
    #: added to the SET of ``notification_attempt``: the notification's claim let go
    _unclaim_notification = ""

    def _fence(self, db: Database, delivery_id: int) -> None:
        """Before a file is marked ``renaming``: raise ``ClaimLostError`` if this host may not rename it."""

    def _attempt_ended(self, db: Database, delivery_id: int) -> None:
        """In the transaction that records a delivery's success or failure: let go of its claim."""


def filters(*clauses: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause of the clauses whose value is not None; ``True`` adds a clause without a parameter."""
    where = ["1 = 1"]
    params: list[Any] = []
    for clause, value in clauses:
        if value is None:
            continue
        where.append(clause)
        if value is not True:
            params.append(value)
    return " AND ".join(where), params


def to_delivery(row: Any) -> Delivery:
    """A row of ``deliveries`` as a ``Delivery``."""
    values = dict(row)
    values["remote_paths"] = tuple(json.loads(values["remote_paths"]))
    return Delivery(**values)

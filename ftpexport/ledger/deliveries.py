"""The ledger's deliveries and attempts, as the exporter records them (SQLite and PostgreSQL).

A delivery is one (record id, content hash, destination). It is ``pending`` until every file is
on the server, then ``delivered``; ``failed`` keeps the last error and is parked until someone
requeues it (``ftpexport retry``); ``superseded`` marks an undelivered version of a record that a
newer version replaced. Every attempt is kept, so the ledger answers "what was sent to whom, when".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .rows import Delivery, now
from .sql import Queries, to_delivery


class Deliveries(Queries):
    """The deliveries and their attempts: what the exporter records as it goes.

    A method's contract is its docstring on ``base.Ledger``; its SQL serves SQLite and PostgreSQL (sql.py).
    """

    def find(self, record_id: str, content_hash: str, destination: str) -> Delivery | None:
        with self._reading() as db:
            row = db.execute(
                "SELECT * FROM deliveries WHERE record_id = ? AND content_hash = ? AND destination = ?",
                (record_id, content_hash, destination),
            ).fetchone()
        return to_delivery(row) if row else None

    def open_delivery(
        self,
        *,
        record_id: str,
        content_hash: str,
        client_id: str,
        destination: str,
        record_path: str,
        vin: str | None = None,
        user_id: str | None = None,
    ) -> Delivery:
        stamp = now()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO deliveries (record_id, content_hash, client_id, destination, record_path, status,"
                " created_at, updated_at, vin, user_id) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)"
                " ON CONFLICT (record_id, content_hash, destination) DO UPDATE SET record_path = excluded.record_path,"
                " status = CASE WHEN deliveries.status = 'superseded' THEN 'pending' ELSE deliveries.status END",
                (record_id, content_hash, client_id, destination, record_path, stamp, stamp, vin, user_id),
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
        return to_delivery(row)

    def start_attempt(self, delivery_id: int, correlation_id: str) -> int:
        """Record that an attempt begins; returns the attempt id.

        A delivery superseded by a newer version of its record (read while this one was queued or
        running) stays superseded: only a success makes it ``delivered``.
        """
        stamp = now()
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = CASE WHEN status = 'superseded' THEN status ELSE 'pending' END,"
                " attempts = attempts + 1, correlation_id = ?, updated_at = ? WHERE id = ?",
                (correlation_id, stamp, delivery_id),
            )
            return self._insert(
                db,
                "INSERT INTO attempts (delivery_id, correlation_id, started_at) VALUES (?, ?, ?)",
                (delivery_id, correlation_id, stamp),
            )

    def withdraw_attempt(self, delivery_id: int, attempt_id: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM attempts WHERE id = ? AND delivery_id = ?", (attempt_id, delivery_id))
            db.execute(
                "UPDATE deliveries SET attempts = attempts - 1, updated_at = ? WHERE id = ? AND attempts > 0",
                (now(), delivery_id),
            )

    def succeed(self, delivery_id: int, attempt_id: int, remote_paths: list[str], sent: int) -> None:
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
            self._attempt_ended(db, delivery_id)

    def fail(self, delivery_id: int, attempt_id: int, error: str, *, final: bool, sent: int = 0) -> None:
        """Record a failed attempt; ``final`` parks the delivery as failed, else it stays pending.

        A superseded delivery stays superseded: the newer version is the one to send.
        """
        stamp = now()
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = CASE WHEN status = 'superseded' THEN status ELSE ? END,"
                " last_error = ?, updated_at = ? WHERE id = ?",
                ("failed" if final else "pending", error, stamp, delivery_id),
            )
            db.execute(
                "UPDATE attempts SET finished_at = ?, result = 'failed', error = ?, bytes = ? WHERE id = ?",
                (stamp, error, sent, attempt_id),
            )
            self._attempt_ended(db, delivery_id)

    def get(self, delivery_id: int) -> Delivery:
        """One delivery by id."""
        with self._reading() as db:
            row = db.execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
        if row is None:
            raise KeyError(delivery_id)
        return to_delivery(row)

    def close_interrupted(self) -> int:
        """Mark attempts that never finished (the process was killed) as interrupted; returns how many.

        Call it only while holding the ledger's lock file: then no attempt can be running (on a
        shared ledger, ``_unheld`` keeps the attempts of deliveries a live lease holds).
        """
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE attempts AS a SET finished_at = ?, result = 'interrupted',"  # noqa: S608
                f" error = 'the process stopped during this attempt' WHERE finished_at IS NULL{self._unheld}",
                (now(),),
            )
        return cursor.rowcount

    def defer(self, delivery_id: int, reason: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET last_error = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
                (reason, now(), delivery_id),
            )

    def requeue(
        self, *, client_id: str | None = None, destination: str | None = None, record_id: str | None = None
    ) -> list[Delivery]:
        """Put failed deliveries back to pending with a fresh attempt budget; returns them.

        The attempt history stays in the ``attempts`` table.
        """
        where = "status = 'failed'"
        params: list[Any] = []
        for column, value in (("client_id", client_id), ("destination", destination), ("record_id", record_id)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        with self._transaction() as db:
            rows = db.execute(f"SELECT * FROM deliveries WHERE {where} ORDER BY id", params).fetchall()  # noqa: S608
            db.execute(
                f"UPDATE deliveries SET status = 'pending', attempts = 0, updated_at = ? WHERE {where}",  # noqa: S608
                [now(), *params],
            )
        return [to_delivery(row) for row in rows]

    def pending_record_paths(self) -> list[str]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT record_path, MIN(id) AS first FROM deliveries AS d"  # noqa: S608
                f" WHERE status = 'pending'{self._claimable} GROUP BY record_path ORDER BY first"
            ).fetchall()
        return [row["record_path"] for row in rows]

    def give_up_on_missing(self, record_path: str, reason: str) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE deliveries SET status = 'failed', last_error = ?, updated_at = ?"
                " WHERE record_path = ? AND status = 'pending'",
                (reason, now(), record_path),
            )
        return cursor.rowcount

    def by_ids(self, delivery_ids: Sequence[int]) -> list[Delivery]:
        marks = ", ".join("?" * len(delivery_ids))
        return self._select_deliveries(f"id IN ({marks}) ORDER BY id", delivery_ids)

"""The outbox of the clients' webhooks (SQLite): the ``notifications`` table.

A notification is written when a delivery ends and stays ``pending`` until the client's endpoint
accepts it (``sent``) or its attempts run out (``failed``).
"""

from __future__ import annotations

from .base import Notification, NotificationStatus, now
from .connection import Connection, filters


class Outbox(Connection):
    """The webhook outbox: notifications queued, due, and how each attempt went.

    A method's contract is its docstring on ``base.Ledger``; here only what is particular to SQLite.
    """

    def add_notification(
        self,
        *,
        webhook_id: str,
        delivery_id: int | None,
        client_id: str,
        event: str,
        url: str,
        payload: str,
        correlation_id: str | None,
    ) -> int:
        stamp = now()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO notifications (webhook_id, delivery_id, client_id, event, url, payload, correlation_id,"
                " status, next_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (webhook_id, delivery_id, client_id, event, url, payload, correlation_id, stamp, stamp, stamp),
            )
        return int(cursor.lastrowid or 0)

    def due_notifications(self, at: str | None = None, limit: int = 100) -> list[Notification]:
        with self._reading():
            rows = self._db.execute(
                "SELECT * FROM notifications WHERE status = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?",
                (at or now(), limit),
            ).fetchall()
        return [dict(row) for row in rows]

    def notification_attempt(
        self, notification_id: int, *, ok: bool, code: int | None, error: str | None, next_at: str | None
    ) -> None:
        stamp = now()
        status = "sent" if ok else "pending" if next_at else "failed"
        with self._transaction() as db:
            db.execute(
                "UPDATE notifications SET status = ?, attempts = attempts + 1, response_code = ?, last_error = ?,"
                " next_at = COALESCE(?, next_at), updated_at = ?, sent_at = CASE WHEN ? THEN ? END WHERE id = ?",
                (status, code, error, next_at, stamp, ok, stamp, notification_id),
            )

    def notifications(
        self, *, client_id: str | None = None, status: NotificationStatus | None = None
    ) -> list[Notification]:
        where, params = filters(("client_id = ?", client_id), ("status = ?", status))
        with self._reading():
            query = f"SELECT * FROM notifications WHERE {where} ORDER BY id"  # noqa: S608
            rows = self._db.execute(query, params).fetchall()
        return [dict(row) for row in rows]

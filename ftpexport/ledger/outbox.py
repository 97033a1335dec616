"""The outbox of the clients' webhooks (SQLite and PostgreSQL): the ``notifications`` table.

A notification is written when a delivery ends and stays ``pending`` until the client's endpoint
accepts it (``sent``) or its attempts run out (``failed``).
"""

from __future__ import annotations

from .rows import Notification, NotificationStatus, now
from .sql import NOTIFICATION_COLUMNS, Queries, filters


class Outbox(Queries):
    """The webhook outbox: notifications queued, due, and how each attempt went.

    A method's contract is its docstring on ``base.Ledger``; its SQL serves SQLite and PostgreSQL (sql.py).
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
            return self._insert(
                db,
                "INSERT INTO notifications (webhook_id, delivery_id, client_id, event, url, payload, correlation_id,"
                " status, next_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (webhook_id, delivery_id, client_id, event, url, payload, correlation_id, stamp, stamp, stamp),
            )

    def due_notifications(self, at: str | None = None, limit: int = 100) -> list[Notification]:
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE status = 'pending' AND next_at <= ?"  # noqa: S608
                " ORDER BY next_at, id LIMIT ?",
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
                "UPDATE notifications SET status = ?, attempts = attempts + 1, response_code = ?, last_error = ?,"  # noqa: S608
                " next_at = COALESCE(?, next_at), updated_at = ?, sent_at = CASE WHEN ? THEN ? END"
                f"{self._unclaim_notification} WHERE id = ?",
                (status, code, error, next_at, stamp, ok, stamp, notification_id),
            )

    def notifications(
        self, *, client_id: str | None = None, status: NotificationStatus | None = None
    ) -> list[Notification]:
        where, params = filters(("client_id = ?", client_id), ("status = ?", status))
        with self._reading() as db:
            query = f"SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE {where} ORDER BY id"  # noqa: S608
            rows = db.execute(query, params).fetchall()
        return [dict(row) for row in rows]

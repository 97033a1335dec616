"""The ledger's reports (SQLite and PostgreSQL): what ``status``, ``history``, ``report`` and the metrics read.

``route_totals`` keeps the number of deliveries of each (client, destination, status), updated
by triggers in the same transaction as the deliveries, so ``status`` does not count a million
rows.
"""

from __future__ import annotations

import json
from typing import Any

from .rows import AttemptTrail, Delivery, NotificationTotals, RouteTotals, Status
from .sql import Database, Queries, filters


class Reports(Queries):
    """What status, history, report and the metrics read: counts, trails, totals.

    A method's contract is its docstring on ``base.Ledger``; its SQL serves SQLite and PostgreSQL (sql.py).
    """

    def deliveries(
        self,
        *,
        status: Status | None = None,
        client_id: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[Delivery]:
        where, params = filters(("status = ?", status), ("client_id = ?", client_id), ("updated_at >= ?", since))
        condition = f"{where} ORDER BY updated_at DESC, id DESC"
        if limit is not None:
            condition += " LIMIT ?"
            params.append(limit)
        return self._select_deliveries(condition, params)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{client_id: {status: count}}``."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT client_id, status, COUNT(*) AS n FROM deliveries GROUP BY client_id, status ORDER BY client_id"
            ).fetchall()
        result: dict[str, dict[str, int]] = {}
        for row in rows:
            result.setdefault(row["client_id"], {})[row["status"]] = row["n"]
        return result

    def history(
        self, *, client_id: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[AttemptTrail]:
        """Every attempt started in [since, until) (ISO 8601 UTC), oldest first, with its delivery.

        Answers "what was sent to client X on day D": each row has the record, the destination,
        the remote paths, the bytes, the result, the error, the correlation id and whether the
        attempt's protocol transcript is kept (``transcript``).
        """
        query = (
            "SELECT a.started_at, a.finished_at, a.result, a.error, a.bytes, a.correlation_id,"
            " d.client_id, d.destination, d.record_id, d.content_hash, d.record_path, d.remote_paths,"
            " d.status AS delivery_status,"
            " EXISTS (SELECT 1 FROM transcripts t WHERE t.attempt_id = a.id) AS transcript"
            " FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE 1 = 1"
        )
        params: list[Any] = []
        for clause, value in (
            ("d.client_id = ?", client_id),
            ("a.started_at >= ?", since),
            ("a.started_at < ?", until),
        ):
            if value is not None:
                query += f" AND {clause}"
                params.append(value)
        with self._reading() as db:
            rows = db.execute(query + " ORDER BY a.started_at, a.id", params).fetchall()
        result = []
        for row in rows:
            entry = dict(row)
            # remote paths are known once delivered; a failed attempt shows none
            entry["remote_paths"] = json.loads(entry["remote_paths"]) if entry["result"] == "delivered" else []
            entry["transcript"] = bool(entry["transcript"])  # SQLite answers 0 or 1
            result.append(entry)
        return result

    def routes(self, *, client_id: str | None = None, since: str | None = None) -> list[RouteTotals]:
        """One row per (client, destination): delivered, pending and failed counts, the last success,
        the oldest undelivered delivery (pending or failed) and the newest error of one.

        ``since`` (ISO 8601) keeps the deliveries that changed since then.
        """
        with self._reading() as db:
            if since is None:
                result = self._routes_from_totals(db, client_id)
            else:
                where, params = filters(("client_id = ?", client_id), ("updated_at >= ?", since))
                query = f"{_ROUTES} WHERE {where} GROUP BY client_id, destination ORDER BY client_id, destination"
                result = [dict(row) for row in db.execute(query, params)]
            # the newest error of each destination's undelivered deliveries, in one pass
            where, params = filters(("client_id = ?", client_id))
            errors = {
                (row["client_id"], row["destination"]): row
                for row in db.execute(
                    "SELECT client_id, destination, last_error, updated_at FROM (SELECT client_id, destination,"  # noqa: S608
                    " last_error, updated_at, ROW_NUMBER() OVER (PARTITION BY client_id, destination"
                    " ORDER BY updated_at DESC) AS n FROM deliveries WHERE status IN ('pending', 'failed')"
                    f" AND last_error IS NOT NULL AND {where}) AS newest WHERE n = 1",
                    params,
                )
            }
        for entry in result:
            undelivered = entry["pending"] or entry["failed"]
            error = errors.get((entry["client_id"], entry["destination"])) if undelivered else None
            entry["last_error"] = error["last_error"] if error else None
            entry["last_error_at"] = error["updated_at"] if error else None
        return result

    def _routes_from_totals(self, db: Database, client_id: str | None) -> list[RouteTotals]:
        """``routes()`` without ``since``: the counts from ``route_totals``, the times by index seeks
        (a few per destination, instead of reading every delivery)."""
        where, params = filters(("client_id = ?", client_id))
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for row in db.execute(f"SELECT * FROM route_totals WHERE {where} AND n > 0", params):  # noqa: S608
            counts.setdefault((row["client_id"], row["destination"]), {})[row["status"]] = row["n"]
        result = []
        for (client, destination), n in sorted(counts.items()):
            key = (client, destination)
            last_success = db.execute(
                "SELECT MAX(delivered_at) FROM deliveries WHERE client_id = ? AND destination = ?", key
            ).fetchone()[0]
            oldest = [
                db.execute(
                    "SELECT MIN(created_at) FROM deliveries WHERE client_id = ? AND destination = ? AND status = ?",
                    (*key, status),
                ).fetchone()[0]
                for status in ("pending", "failed")
                if n.get(status)
            ]
            result.append({
                "client_id": client, "destination": destination,
                "delivered": n.get("delivered", 0), "pending": n.get("pending", 0), "failed": n.get("failed", 0),
                "last_success": last_success, "oldest_undelivered": min(oldest, default=None),
            })  # fmt: skip
        return result

    def oldest_pending(self) -> str | None:
        with self._reading() as db:
            row = db.execute("SELECT MIN(created_at) FROM deliveries WHERE status = 'pending'").fetchone()
        return row[0]

    def delivered(
        self, *, since: str | None = None, until: str | None = None, client_id: str | None = None
    ) -> list[Delivery]:
        where, params = filters(
            ("delivered_at IS NOT NULL", True),
            ("delivered_at >= ?", since),
            ("delivered_at < ?", until),
            ("client_id = ?", client_id),
        )
        return self._select_deliveries(f"{where} AND status = 'delivered' ORDER BY delivered_at, id", params)

    def notification_totals(
        self, *, client_id: str | None = None, since: str | None = None
    ) -> list[NotificationTotals]:
        """One row per (client, endpoint URL) with notifications not sent: pending and failed counts, the
        oldest pending one's creation time, and the newest error (``last_error``, ``last_error_at``).

        Sent notifications are not read (the ``notifications_due`` index finds the others); ``since``
        keeps the notifications that changed since then.
        """
        where, params = filters(("client_id = ?", client_id), ("updated_at >= ?", since))
        unsent = f"status IN ('pending', 'failed') AND {where}"
        totals_query = (
            "SELECT client_id, url, COUNT(*) FILTER (WHERE status = 'pending') AS pending,"  # noqa: S608
            " COUNT(*) FILTER (WHERE status = 'failed') AS failed,"
            " MIN(CASE WHEN status = 'pending' THEN created_at END) AS oldest_pending"
            f" FROM notifications WHERE {unsent} GROUP BY client_id, url ORDER BY client_id, url"
        )
        errors_query = (
            "SELECT client_id, url, last_error, updated_at FROM (SELECT client_id, url, last_error, updated_at,"  # noqa: S608
            " ROW_NUMBER() OVER (PARTITION BY client_id, url ORDER BY updated_at DESC, id DESC) AS n"
            f" FROM notifications WHERE {unsent} AND last_error IS NOT NULL) AS newest WHERE n = 1"
        )
        with self._reading() as db:
            totals = db.execute(totals_query, params).fetchall()
            errors = {(row["client_id"], row["url"]): row for row in db.execute(errors_query, params)}
        result = []
        for row in totals:
            error = errors.get((row["client_id"], row["url"]))
            result.append({**dict(row), "last_error": error["last_error"] if error else None,
                           "last_error_at": error["updated_at"] if error else None})  # fmt: skip
        return result

    def attempts(self, delivery_id: int) -> list[dict[str, Any]]:
        """The attempts of one delivery, oldest first."""
        with self._reading() as db:
            rows = db.execute("SELECT * FROM attempts WHERE delivery_id = ? ORDER BY id", (delivery_id,)).fetchall()
        return [dict(row) for row in rows]


_ROUTES = (
    "SELECT client_id, destination,"
    " COUNT(*) FILTER (WHERE status = 'delivered') AS delivered, COUNT(*) FILTER (WHERE status = 'pending') AS pending,"
    " COUNT(*) FILTER (WHERE status = 'failed') AS failed, MAX(delivered_at) AS last_success,"
    " MIN(CASE WHEN status IN ('pending', 'failed') THEN created_at END) AS oldest_undelivered"
    " FROM deliveries"
)

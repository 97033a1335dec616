"""``PostgresLedger``: the ledger's queries (shared with SQLite) on PostgreSQL, with the leases of a
shared ledger where the interface asks for them (``base.Ledger``, ``coordination.py``):

- ``pending_record_paths`` lists only the record folders of deliveries another host could claim now
  (no live lease, no backoff running, destination not paused);
- ``close_interrupted`` closes only the attempts of deliveries no live lease holds (any time);
- ``mark_files`` with a ``renaming`` of a delivery this host no longer holds raises ``ClaimLostError``
  (a delivery never claimed by any host, written by a process that does not claim, is not fenced);
- ``succeed`` and ``fail`` let go of this host's claim in the same transaction;
- ``due_notifications`` claims what it returns, and returns no notification claimed by a live host,
  itself included, until ``notification_attempt`` lets go of it: one host sends each, once.
"""

from __future__ import annotations

from ...errors import ClaimLostError
from ..base import Ledger
from ..capabilities import Capabilities
from ..coordination import Coordination
from ..deliveries import Deliveries
from ..journal import Journal
from ..outbox import Outbox
from ..records import RecordFolders
from ..reports import Reports
from ..rows import Notification, now
from ..sql import NOTIFICATION_COLUMNS, Database
from ..transcripts import Transcripts
from .connection import RETRY_FOR, Connection, retried
from .coordination import PostgresCoordination, live
from .schema import create_or_upgrade


class PostgresLedger(
    Deliveries, Journal, RecordFolders, Outbox, Reports, Capabilities, Transcripts, Connection, Ledger
):
    """The delivery ledger in a PostgreSQL database several hosts share; safe to share between threads."""

    _claimable = (
        " AND NOT EXISTS (SELECT 1 FROM claims AS c WHERE c.delivery_id = d.id"  # noqa: S608
        f" AND (c.not_before > now() OR {live('c.holder')}))"
        " AND NOT EXISTS (SELECT 1 FROM destinations AS s WHERE s.destination = d.destination"
        " AND s.paused_until > now())"
    )
    _unheld = (
        " AND NOT EXISTS (SELECT 1 FROM claims AS c WHERE c.delivery_id = a.delivery_id"  # noqa: S608
        f" AND {live('c.holder')})"
    )
    _unclaim_notification = ", claimed_by = NULL"

    def __init__(self, url: str, lease: float, *, location: str, retry_for: float = RETRY_FOR) -> None:
        """``location``: the URL without its password (``display_state``), the one way it is shown."""
        super().__init__(url, location, retry_for=retry_for)
        self.connect_once(lambda conn: create_or_upgrade(conn, location))
        self._coordination = PostgresCoordination(self, lease)

    @property
    def coordination(self) -> Coordination:
        return self._coordination

    def _fence(self, db: Database, delivery_id: int) -> None:
        db.execute("SELECT 1 FROM deliveries WHERE id = ? FOR SHARE", (delivery_id,))  # after a claim in progress
        row = db.execute(
            f"SELECT holder, {live('holder')} AS live FROM claims WHERE delivery_id = ?",  # noqa: S608
            (delivery_id,),
        ).fetchone()
        name = self._coordination.name
        if row is None or (row["holder"] == name and row["live"]):
            return
        now_held = f"it is held by {row['holder']}" if row["live"] and row["holder"] else "its lease ran out"
        raise ClaimLostError(
            f"{self.location}: delivery {delivery_id}: this host ({name}) no longer holds it ({now_held});"
            " the file is not renamed",
            hint="nothing to do: another host takes the delivery over",
        )

    def _attempt_ended(self, db: Database, delivery_id: int) -> None:
        db.execute(
            "UPDATE claims SET holder = NULL WHERE delivery_id = ? AND holder = ?",
            (delivery_id, self._coordination.name),
        )

    def due_notifications(self, at: str | None = None, limit: int = 100) -> list[Notification]:
        name = self._coordination.name
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE notifications SET claimed_by = ? WHERE id IN (SELECT id FROM notifications"  # noqa: S608
                " WHERE status = 'pending' AND next_at <= ? AND (claimed_by IS NULL"
                f" OR NOT {live('claimed_by')}) ORDER BY next_at, id LIMIT ? FOR UPDATE SKIP LOCKED)"
                f" RETURNING {NOTIFICATION_COLUMNS}",
                (name, at or now(), limit),
            ).fetchall()
        return sorted((dict(row) for row in rows), key=lambda row: (row["next_at"], row["id"]))  # type: ignore[return-value]


# every operation is run again over a fresh connection while the database cannot be reached
for _name in sorted(Ledger.__abstractmethods__ - {"close"} | {"attempts", "counts"}):
    setattr(PostgresLedger, _name, retried(getattr(PostgresLedger, _name)))

"""The leases of one host on a shared PostgreSQL ledger: claims, connection slots, the breaker and
its probe, the hosts (the contract: ledger/coordination.py).

A lease lives as long as its holder's row in ``hosts`` says (``lease_until``, renewed by the
heartbeat: one row, whatever the host holds), by the database's clock. Every decision is taken
in one transaction that first locks what it decides on (the delivery's row, the destination's row,
an advisory lock per destination for its slots), so two hosts never both win.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import UTC, datetime
from typing import Any

from ..coordination import Claim, Coordination, HeldDelivery, HostRow
from .connection import Connection, Database, retried

#: seconds a claim refused because another host probes the destination waits before it asks again
PROBE_WAIT = 1.0
#: seconds after its lease ran out that a dead host's row is dropped (by any host's heartbeat)
FORGET_AFTER = 3600.0
#: the first key of the advisory locks that serialise the slots of one destination ("slot")
_SLOT_LOCK = 0x736C6F74


def live(holder: str) -> str:
    """SQL: the host named by the column ``holder`` holds a live lease (the database's clock)."""
    return f"EXISTS (SELECT 1 FROM hosts AS h WHERE h.name = {holder} AND h.lease_until > now())"  # noqa: S608


def stamp(moment: datetime) -> str:
    """A time of the database as the ledger shows times (ISO 8601, UTC)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


class PostgresCoordination(Coordination):
    """This host's leases on the ledger's database (see the module's docstring)."""

    shared = True

    def __init__(self, connection: Connection, lease: float) -> None:
        self._connection = connection
        self.lease = lease
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self._connection.location}>"

    def _transaction(self) -> Any:
        return self._connection._transaction()

    # --- the host

    @retried
    def register(self) -> None:
        with self._transaction() as db:
            self._renew(db)

    @retried
    def heartbeat(self) -> None:
        with self._transaction() as db:
            self._renew(db)
            # hosts dead for longer than FORGET_AFTER leave status (a restarted process is a new host)
            db.execute("DELETE FROM hosts WHERE lease_until < now() - make_interval(secs => ?)", (FORGET_AFTER,))

    def _renew(self, db: Database) -> None:
        db.execute(
            "INSERT INTO hosts (name, hostname, pid, lease_until) VALUES (?, ?, ?, now() + make_interval(secs => ?))"
            " ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), lease_until = excluded.lease_until",
            (self.name, socket.gethostname(), os.getpid(), self.lease),
        )

    @retried
    def leave(self) -> None:
        with self._transaction() as db:
            db.execute("UPDATE claims SET holder = NULL WHERE holder = ?", (self.name,))
            db.execute("DELETE FROM slots WHERE holder = ?", (self.name,))
            db.execute(
                "UPDATE destinations SET probe_holder = NULL, probe_delivery = NULL WHERE probe_holder = ?",
                (self.name,),
            )
            db.execute("UPDATE notifications SET claimed_by = NULL WHERE claimed_by = ?", (self.name,))
            db.execute("DELETE FROM hosts WHERE name = ?", (self.name,))

    # --- deliveries

    @retried
    def claim(self, delivery_id: int, destination: str) -> Claim:
        with self._transaction() as db:
            # the delivery's row first: a claim racing this one waits here, then reads what it did
            row = db.execute("SELECT status FROM deliveries WHERE id = ? FOR UPDATE", (delivery_id,)).fetchone()
            if row is None:
                return Claim(False, reason="no such delivery", settled=True)
            if row["status"] != "pending":
                return Claim(False, reason=row["status"], settled=True)
            state = db.execute(
                "SELECT c.holder, c.holder IS NOT NULL AND " + live("c.holder") + " AS held,"  # noqa: S608
                " EXTRACT(EPOCH FROM c.not_before - now())::float8 AS backoff,"
                " EXTRACT(EPOCH FROM s.paused_until - now())::float8 AS paused, COALESCE(s.trips, 0) AS trips,"
                " s.probe_holder, s.probe_delivery, s.probe_holder IS NOT NULL AND " + live("s.probe_holder") +
                " AS probing, " + live("?") + " AS alive"
                " FROM (SELECT 1) AS one LEFT JOIN claims AS c ON c.delivery_id = ?"
                " LEFT JOIN destinations AS s ON s.destination = ?",
                (self.name, delivery_id, destination),
            ).fetchone()  # fmt: skip
            if state["held"] and state["holder"] != self.name:
                return Claim(False, holder=state["holder"], reason=f"held by {state['holder']}")
            if (state["backoff"] or 0) > 0:
                return Claim(False, wait=state["backoff"], reason="waiting for its next try (backoff)")
            if (state["paused"] or 0) > 0:
                return Claim(False, wait=state["paused"], reason="destination paused")
            probe = state["trips"] > 0  # the pause is over: one claim at a time probes the destination
            mine = (state["probe_holder"], state["probe_delivery"]) == (self.name, delivery_id)
            if probe and state["probing"] and not mine:
                return Claim(False, holder=state["probe_holder"], wait=PROBE_WAIT,
                             reason=f"destination being probed by {state['probe_holder']}")  # fmt: skip
            if probe:
                db.execute(
                    "UPDATE destinations SET probe_holder = ?, probe_delivery = ? WHERE destination = ?",
                    (self.name, delivery_id, destination),
                )
            if not state["alive"]:
                self._renew(db)  # a host that claims is alive: a lease granted on a late heartbeat would be dead
            db.execute(
                "INSERT INTO claims (delivery_id, holder, claimed_at) VALUES (?, ?, now())"
                " ON CONFLICT (delivery_id) DO UPDATE SET holder = excluded.holder, not_before = NULL,"
                " claimed_at = CASE WHEN claims.holder = excluded.holder THEN claims.claimed_at ELSE now() END",
                (delivery_id, self.name),
            )
        return Claim(True, probe=probe)

    @retried
    def release(self, delivery_id: int, *, retry_in: float | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO claims (delivery_id, not_before) VALUES (?, now() + make_interval(secs => ?))"  # noqa: S608
                " ON CONFLICT (delivery_id) DO UPDATE SET holder = NULL, not_before = excluded.not_before"
                " WHERE claims.holder IS NULL OR claims.holder = ? OR NOT " + live("claims.holder"),
                (delivery_id, retry_in, self.name),
            )
            db.execute(
                "UPDATE destinations SET probe_holder = NULL, probe_delivery = NULL"
                " WHERE probe_holder = ? AND probe_delivery = ?",
                (self.name, delivery_id),
            )

    # --- connections

    @retried
    def take_slot(self, destination: str, limit: int) -> int | None:
        with self._transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (_SLOT_LOCK, destination))
            held = {
                row["slot"]
                for row in db.execute(
                    "SELECT slot FROM slots WHERE destination = ? AND " + live("slots.holder"),  # noqa: S608
                    (destination,),
                )
            }
            free = [slot for slot in range(limit) if slot not in held]
            if len(held) >= limit or not free:
                return None
            db.execute(
                "INSERT INTO slots (destination, slot, holder) VALUES (?, ?, ?)"
                " ON CONFLICT (destination, slot) DO UPDATE SET holder = excluded.holder, since = now()",
                (destination, free[0], self.name),
            )
        return free[0]

    @retried
    def drop_slot(self, destination: str, slot: int) -> None:
        with self._transaction() as db:
            db.execute(
                "DELETE FROM slots WHERE destination = ? AND slot = ? AND holder = ?", (destination, slot, self.name)
            )

    # --- the breaker

    @retried
    def destination_failed(
        self, destination: str, error: str, *, threshold: int, pause: float, max_pause: float, long: bool
    ) -> float:
        with self._transaction() as db:
            db.execute("INSERT INTO destinations (destination) VALUES (?) ON CONFLICT DO NOTHING", (destination,))
            row = db.execute(
                "SELECT failures, trips, EXTRACT(EPOCH FROM paused_until - now())::float8 AS paused"
                " FROM destinations WHERE destination = ? FOR UPDATE",
                (destination,),
            ).fetchone()
            failures, trips = row["failures"] + 1, row["trips"]
            if (row["paused"] or 0) > 0:  # an attempt that was running when the pause began: it holds already
                db.execute("UPDATE destinations SET last_error = ? WHERE destination = ?", (error, destination))
                return float(row["paused"])
            seconds = 0.0
            if failures >= threshold or trips or long:  # a failed probe (trips) pauses it again at once
                trips, failures = trips + 1, 0
                seconds = max_pause if long else min(pause * 2 ** (trips - 1), max_pause)
            db.execute(
                "UPDATE destinations SET failures = ?, trips = ?, last_error = ?, probe_holder = NULL,"
                " probe_delivery = NULL, paused_until = CASE WHEN ? > 0 THEN now() + make_interval(secs => ?)"
                " ELSE paused_until END WHERE destination = ?",
                (failures, trips, error, seconds, seconds, destination),
            )
        return seconds

    @retried
    def destination_ok(self, destination: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE destinations SET failures = 0, trips = 0, paused_until = NULL, last_error = NULL,"
                " probe_holder = NULL, probe_delivery = NULL WHERE destination = ?",
                (destination,),
            )

    @retried
    def paused(self) -> dict[str, tuple[float, str | None]]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT destination, EXTRACT(EPOCH FROM paused_until - now())::float8 AS seconds, last_error"
                " FROM destinations WHERE paused_until > now()"
            ).fetchall()
        return {row["destination"]: (row["seconds"], row["last_error"]) for row in rows}

    # --- what status shows

    @retried
    def hosts(self) -> list[HostRow]:
        return self._read(  # type: ignore[return-value]
            "SELECT name, hostname, pid, started_at, heartbeat_at, lease_until > now() AS alive,"
            " (SELECT count(*) FROM claims AS c WHERE c.holder = hosts.name) AS deliveries,"
            " (SELECT count(*) FROM slots AS s WHERE s.holder = hosts.name) AS connections"
            " FROM hosts ORDER BY heartbeat_at DESC, name",
            "started_at",
            "heartbeat_at",
        )

    @retried
    def held(self) -> list[HeldDelivery]:
        return self._read(  # type: ignore[return-value]
            "SELECT c.delivery_id, c.holder, d.client_id, d.destination, d.record_id, c.claimed_at AS since,"
            " h.lease_until FROM claims AS c JOIN hosts AS h ON h.name = c.holder AND h.lease_until > now()"
            " JOIN deliveries AS d ON d.id = c.delivery_id ORDER BY c.claimed_at, c.delivery_id",
            "since",
            "lease_until",
        )

    def _read(self, query: str, *times: str) -> list[dict[str, Any]]:
        """The rows of ``query``, its columns ``times`` (the database's) shown as the ledger shows times."""
        with self._transaction() as db:
            rows = db.execute(query).fetchall()
        return [{**row, **{column: stamp(row[column]) for column in times}} for row in rows]

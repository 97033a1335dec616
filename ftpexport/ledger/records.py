"""What the ledger knows of record folders (SQLite and PostgreSQL): the seen cache and the refusals.

``records_seen`` remembers, for a record folder whose every delivery is done, what its files looked
like (names, sizes, times, inodes) and under which rules: a later run that finds the folder and the
rules the same counts it unchanged without reading and hashing its images.

``refused_records`` holds the record folders that were refused (a vehicle.json that is not valid,
no rule file for the client, a name that renders badly) and why, until the folder is accepted or
is gone: ``status`` and the metrics show them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .rows import RefusalKind, RefusedRecord, SeenRecord, now
from .sql import Queries, filters


class RecordFolders(Queries):
    """What the ledger knows of record folders: those seen done, those refused.

    A method's contract is its docstring on ``base.Ledger``; its SQL serves SQLite and PostgreSQL (sql.py).
    """

    # --- records whose every delivery is done (skipped without reading them again)

    def seen(self, record_path: str) -> SeenRecord | None:
        with self._reading() as db:
            row = db.execute(
                "SELECT signature, rules, delivery_ids FROM records_seen WHERE record_path = ?", (record_path,)
            ).fetchone()
        if row is None:
            return None
        return SeenRecord(row["signature"], row["rules"], tuple(json.loads(row["delivery_ids"])))

    def mark_seen(self, record_path: str, signature: str, rules: str, delivery_ids: Sequence[int]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO records_seen VALUES (?, ?, ?, ?, ?) ON CONFLICT (record_path) DO UPDATE SET"
                " signature = excluded.signature, rules = excluded.rules, delivery_ids = excluded.delivery_ids,"
                " updated_at = excluded.updated_at",
                (record_path, signature, rules, json.dumps(sorted(delivery_ids)), now()),
            )

    # --- record folders refused (invalid vehicle.json, no rule file, a name that renders badly)

    def refuse(
        self,
        record_path: str,
        *,
        kind: RefusalKind,
        reason: str,
        record_id: str | None = None,
        client_id: str | None = None,
        rule_file: str | None = None,
    ) -> None:
        stamp = now()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO refused_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT (record_path) DO UPDATE"
                " SET record_id = excluded.record_id, client_id = excluded.client_id, kind = excluded.kind,"
                " reason = excluded.reason, rule_file = excluded.rule_file, last_seen = excluded.last_seen,"
                " times = refused_records.times + 1",
                (record_path, record_id, client_id, kind, reason, rule_file, stamp, stamp),
            )

    def clear_refused(self, record_path: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM refused_records WHERE record_path = ?", (record_path,))
        return cursor.rowcount > 0

    def refused(self, *, client_id: str | None = None, since: str | None = None) -> list[RefusedRecord]:
        where, params = filters(("client_id = ?", client_id), ("last_seen >= ?", since))
        with self._reading() as db:
            query = f"SELECT * FROM refused_records WHERE {where} ORDER BY last_seen DESC, record_path"  # noqa: S608
            rows = db.execute(query, params).fetchall()
        return [dict(row) for row in rows]

    def refused_counts(self) -> dict[str, int]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT COALESCE(client_id, '') AS client, COUNT(*) AS n FROM refused_records GROUP BY 1"
            ).fetchall()
        return {row["client"]: row["n"] for row in rows}

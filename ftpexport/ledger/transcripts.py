"""The protocol transcripts of attempts (SQLite and PostgreSQL): what was said with the server.

One row per attempt that kept one: the attempt's delivery and destination, whether it delivered,
its size in bytes, and its entries (a JSON list, secrets already redacted by whoever recorded it).
Every failed attempt keeps its transcript; of the delivered ones, the last few per destination.
Old ones are purged by age.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .rows import AttemptTranscript, now
from .sql import Queries

TABLE = """
CREATE TABLE IF NOT EXISTS transcripts (
    attempt_id     INTEGER PRIMARY KEY REFERENCES attempts (id),
    delivery_id    INTEGER NOT NULL REFERENCES deliveries (id),
    destination    TEXT NOT NULL,
    ok             INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    size           INTEGER NOT NULL,
    entries        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transcripts_by_destination ON transcripts (destination, ok, created_at);
CREATE INDEX IF NOT EXISTS transcripts_by_delivery ON transcripts (delivery_id);
CREATE INDEX IF NOT EXISTS transcripts_by_age ON transcripts (created_at);
CREATE INDEX IF NOT EXISTS attempts_by_correlation ON attempts (correlation_id)
"""


class Transcripts(Queries):
    """Protocol transcripts per attempt, bounded per destination and purged by age.

    A method's contract is its docstring on ``base.Ledger``; its SQL serves SQLite and PostgreSQL (sql.py).
    """

    def save_transcript(
        self,
        attempt_id: int,
        delivery_id: int,
        destination: str,
        entries: Sequence[dict[str, Any]],
        *,
        ok: bool,
        keep_ok: int,
    ) -> None:
        text = json.dumps(list(entries), ensure_ascii=False)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO transcripts VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (attempt_id) DO UPDATE SET"
                " ok = excluded.ok, created_at = excluded.created_at, size = excluded.size, entries = excluded.entries",
                (attempt_id, delivery_id, destination, int(ok), now(), len(text.encode()), text),
            )
            if ok:
                # of the delivered attempts, the destination's last ``keep_ok``
                db.execute(
                    "DELETE FROM transcripts WHERE destination = ? AND ok = 1 AND attempt_id NOT IN"
                    " (SELECT attempt_id FROM transcripts WHERE destination = ? AND ok = 1"
                    " ORDER BY created_at DESC, attempt_id DESC LIMIT ?)",
                    (destination, destination, max(keep_ok, 0)),
                )

    def transcripts(self, correlation_id: str) -> list[AttemptTranscript]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT t.attempt_id, t.delivery_id, t.destination, a.correlation_id, a.started_at, a.finished_at,"
                " a.result, a.error, t.ok, t.size, t.entries FROM transcripts t JOIN attempts a ON a.id = t.attempt_id"
                " WHERE t.delivery_id IN (SELECT delivery_id FROM attempts WHERE correlation_id = ?"
                " UNION SELECT id FROM deliveries WHERE correlation_id = ?)"
                " ORDER BY a.started_at, t.attempt_id",
                (correlation_id, correlation_id),
            ).fetchall()
        result = []
        for row in rows:
            entry = dict(row)
            entry["ok"] = bool(entry["ok"])
            entry["entries"] = json.loads(entry["entries"])
            result.append(AttemptTranscript(**entry))  # type: ignore[typeddict-item]
        return result

    def correlation_known(self, correlation_id: str) -> bool:
        with self._reading() as db:
            row = db.execute(
                "SELECT EXISTS (SELECT 1 FROM attempts WHERE correlation_id = ?)"
                " OR EXISTS (SELECT 1 FROM deliveries WHERE correlation_id = ?)",
                (correlation_id, correlation_id),
            ).fetchone()
        return bool(row[0])

    def attempts_with_transcripts(self, attempt_ids: Sequence[int]) -> set[int]:
        if not attempt_ids:
            return set()
        marks = ", ".join("?" * len(attempt_ids))
        with self._reading() as db:
            rows = db.execute(
                f"SELECT attempt_id FROM transcripts WHERE attempt_id IN ({marks})",  # noqa: S608
                list(attempt_ids),
            ).fetchall()
        return {row["attempt_id"] for row in rows}

    def purge_transcripts(self, before: str) -> int:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM transcripts WHERE created_at < ?", (before,))
        return cursor.rowcount

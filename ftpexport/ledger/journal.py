"""The crash journal of a delivery (SQLite and PostgreSQL): the ``files`` table.

A file is marked ``renaming`` before its temporary name is renamed to the final one and
``published`` after (``ftpexport.publish`` writes both with one ``mark_files``: the file before, now
published, with the next one's ``renaming``). A process killed between the two leaves ``renaming``;
the next attempt resolves it from the server (temporary file still there or not) instead of sending
the file a second time.
"""

from __future__ import annotations

from collections.abc import Mapping

from .rows import FileState, now
from .sql import Queries


class Journal(Queries):
    """The crash journal: the files of a delivery around their rename.

    A method's contract is its docstring on ``base.Ledger``; its SQL serves SQLite and PostgreSQL (sql.py).
    """

    def mark_files(self, delivery_id: int, states: Mapping[str, FileState]) -> None:
        if not states:
            return
        with self._transaction() as db:
            if "renaming" in states.values():
                self._fence(db, delivery_id)
            stamp = now()
            db.execute(
                "INSERT INTO files (delivery_id, remote_path, state, updated_at) VALUES "  # noqa: S608 (placeholders only)
                + ", ".join(["(?, ?, ?, ?)"] * len(states))
                + " ON CONFLICT (delivery_id, remote_path) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at",
                [value for path, state in states.items() for value in (delivery_id, path, state, stamp)],
            )

    def forget_file(self, delivery_id: int, remote_path: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM files WHERE delivery_id = ? AND remote_path = ?", (delivery_id, remote_path))

    def file_states(self, delivery_id: int) -> dict[str, FileState]:
        with self._reading() as db:
            rows = db.execute("SELECT remote_path, state FROM files WHERE delivery_id = ?", (delivery_id,)).fetchall()
        return {row["remote_path"]: row["state"] for row in rows}

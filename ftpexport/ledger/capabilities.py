"""What the ledger knows of each destination's server (SQLite and PostgreSQL): its capabilities.

The capability probe (``ftpexport.capabilities``) learns what a server does on a destination's
first connection and in ``test-connection``: its FEAT or SFTP extensions, whether a rename works
and may replace a file, how many sessions it takes. One row per destination keeps the latest
finding, when it was probed, and when what was learned last changed.
"""

from __future__ import annotations

import json
from typing import Any

from .rows import LearnedCapabilities, now
from .sql import Queries

#: one row per destination; ``capabilities`` is a JSON object
TABLE = """
CREATE TABLE IF NOT EXISTS server_capabilities (
    destination    TEXT PRIMARY KEY,
    capabilities   TEXT NOT NULL,
    probed_at      TEXT NOT NULL,
    changed_at     TEXT NOT NULL
)
"""


class Capabilities(Queries):
    """The capabilities learned of each destination's server.

    A method's contract is its docstring on ``base.Ledger``; its SQL serves SQLite and PostgreSQL (sql.py).
    """

    def save_capabilities(self, destination: str, capabilities: dict[str, Any]) -> bool:
        stamp = now()
        text = json.dumps(capabilities, sort_keys=True)
        # no SELECT first: on PostgreSQL two connections learning a new destination at once would both
        # find no row and both insert it; each statement here decides for itself, under the row's lock
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT INTO server_capabilities VALUES (?, ?, ?, ?) ON CONFLICT (destination) DO NOTHING",
                (destination, text, stamp, stamp),
            ).rowcount
            if inserted:
                return True
            changed = db.execute(
                "UPDATE server_capabilities SET capabilities = ?, probed_at = ?, changed_at = ?"
                " WHERE destination = ? AND capabilities != ?",
                (text, stamp, stamp, destination, text),
            ).rowcount
            if not changed:
                db.execute("UPDATE server_capabilities SET probed_at = ? WHERE destination = ?", (stamp, destination))
        return bool(changed)

    def capabilities(self, destination: str | None = None) -> dict[str, LearnedCapabilities]:
        query = "SELECT * FROM server_capabilities"
        params: list[Any] = []
        if destination is not None:
            query += " WHERE destination = ?"
            params.append(destination)
        with self._reading() as db:
            rows = db.execute(query + " ORDER BY destination", params).fetchall()
        return {
            row["destination"]: LearnedCapabilities(
                destination=row["destination"],
                capabilities=json.loads(row["capabilities"]),
                probed_at=row["probed_at"],
                changed_at=row["changed_at"],
            )
            for row in rows
        }

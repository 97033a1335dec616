"""The ledger read from outside the exporting process, row by row (plain sqlite3, as an operator would)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any


def _query(state: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    if not state.exists():
        return []
    db = sqlite3.connect(state, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, params).fetchall()]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # the exporter has not created its schema yet
        raise
    finally:
        db.close()


def deliveries(state: Path) -> list[dict[str, Any]]:
    """Every row of the ``deliveries`` table, by id."""
    return _query(state, "SELECT * FROM deliveries ORDER BY id")


def attempts(state: Path, delivery_id: int | None = None) -> list[dict[str, Any]]:
    """The attempts (of one delivery), by id."""
    if delivery_id is None:
        return _query(state, "SELECT * FROM attempts ORDER BY id")
    return _query(state, "SELECT * FROM attempts WHERE delivery_id = ? ORDER BY id", (delivery_id,))


def journal(state: Path, delivery_id: int) -> dict[str, str]:
    """The crash journal of one delivery: ``{remote path: renaming | published}``."""
    rows = _query(state, "SELECT remote_path, state FROM files WHERE delivery_id = ?", (delivery_id,))
    return {row["remote_path"]: row["state"] for row in rows}


def statuses(state: Path) -> Counter[str]:
    """How many deliveries have each status."""
    return Counter(row["status"] for row in deliveries(state))

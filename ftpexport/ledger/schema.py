"""The ledger's SQLite schema: its tables, indexes and triggers, and the migrations of older files.

``SCHEMA_VERSION`` is kept in ``PRAGMA user_version``. A file written by a newer ftpexport is left
exactly as it is; an older one gets what it lacks (columns, indexes, tables), and ``route_totals``
is created and filled once from the deliveries. Opening a complete ledger writes nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import ConfigError
from . import capabilities, transcripts

SCHEMA_VERSION = 6
_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id             INTEGER PRIMARY KEY,
    record_id      TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    destination    TEXT NOT NULL,
    record_path    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'superseded')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    remote_paths   TEXT NOT NULL DEFAULT '[]',
    bytes          INTEGER NOT NULL DEFAULT 0,
    correlation_id TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    delivered_at   TEXT,
    vin            TEXT,
    user_id        TEXT,
    UNIQUE (record_id, content_hash, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, client_id);
CREATE INDEX IF NOT EXISTS deliveries_by_destination ON deliveries (destination, record_id);
CREATE TABLE IF NOT EXISTS attempts (
    id             INTEGER PRIMARY KEY,
    delivery_id    INTEGER NOT NULL REFERENCES deliveries (id),
    correlation_id TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    result         TEXT,
    error          TEXT,
    bytes          INTEGER
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON attempts (delivery_id);
CREATE TABLE IF NOT EXISTS files (
    delivery_id    INTEGER NOT NULL REFERENCES deliveries (id),
    remote_path    TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('renaming', 'published')),
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (delivery_id, remote_path)
);
CREATE TABLE IF NOT EXISTS notifications (
    id             INTEGER PRIMARY KEY,
    webhook_id     TEXT NOT NULL UNIQUE,
    delivery_id    INTEGER REFERENCES deliveries (id),
    client_id      TEXT NOT NULL,
    event          TEXT NOT NULL,
    url            TEXT NOT NULL,
    payload        TEXT NOT NULL,
    correlation_id TEXT,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    response_code  INTEGER,
    next_at        TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    sent_at        TEXT
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, next_at);
"""

#: columns added after schema 2, and the indexes that need them
_MIGRATIONS = (
    "ALTER TABLE deliveries ADD COLUMN vin TEXT",
    "ALTER TABLE deliveries ADD COLUMN user_id TEXT",
)
_INDEXES = """
CREATE INDEX IF NOT EXISTS deliveries_by_route
    ON deliveries (client_id, destination, status, created_at, delivered_at, updated_at);
CREATE INDEX IF NOT EXISTS deliveries_by_delivered_at ON deliveries (delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_by_update ON deliveries (updated_at, id);
CREATE INDEX IF NOT EXISTS deliveries_by_status_delivered ON deliveries (status, delivered_at);
CREATE INDEX IF NOT EXISTS deliveries_by_status_created ON deliveries (status, created_at);
CREATE INDEX IF NOT EXISTS attempts_unfinished ON attempts (id) WHERE finished_at IS NULL;
CREATE INDEX IF NOT EXISTS attempts_by_start ON attempts (started_at);
CREATE INDEX IF NOT EXISTS deliveries_by_route_delivered ON deliveries (client_id, destination, delivered_at);
CREATE TABLE IF NOT EXISTS records_seen (
    record_path    TEXT PRIMARY KEY,
    signature      TEXT NOT NULL,
    rules          TEXT NOT NULL,
    delivery_ids   TEXT NOT NULL,
    updated_at     TEXT NOT NULL
) WITHOUT ROWID;
"""

#: record folders refused, and why (schema 5)
_REFUSED = """
CREATE TABLE IF NOT EXISTS refused_records (
    record_path    TEXT PRIMARY KEY,
    record_id      TEXT,
    client_id      TEXT,
    kind           TEXT NOT NULL,
    reason         TEXT NOT NULL,
    rule_file      TEXT,
    first_seen     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    times          INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
"""


#: what was learned of the servers: capabilities per destination, transcripts per attempt (schema 6)
_SERVERS = capabilities.TABLE + ";" + transcripts.TABLE + ";"

#: deliveries counted by (client, destination, status); filled from the deliveries when created
_TOTALS = """
CREATE TABLE route_totals (
    client_id      TEXT NOT NULL,
    destination    TEXT NOT NULL,
    status         TEXT NOT NULL,
    n              INTEGER NOT NULL,
    PRIMARY KEY (client_id, destination, status)
) WITHOUT ROWID;
INSERT INTO route_totals SELECT client_id, destination, status, COUNT(*) FROM deliveries GROUP BY 1, 2, 3;
CREATE TRIGGER route_totals_insert AFTER INSERT ON deliveries BEGIN
    INSERT INTO route_totals VALUES (NEW.client_id, NEW.destination, NEW.status, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER route_totals_update AFTER UPDATE OF status, client_id, destination ON deliveries
    WHEN OLD.status IS NOT NEW.status OR OLD.client_id IS NOT NEW.client_id OR OLD.destination IS NOT NEW.destination
BEGIN
    UPDATE route_totals SET n = n - 1
        WHERE client_id = OLD.client_id AND destination = OLD.destination AND status = OLD.status;
    INSERT INTO route_totals VALUES (NEW.client_id, NEW.destination, NEW.status, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER route_totals_delete AFTER DELETE ON deliveries BEGIN
    UPDATE route_totals SET n = n - 1
        WHERE client_id = OLD.client_id AND destination = OLD.destination AND status = OLD.status;
END;
"""


def check_version(db: sqlite3.Connection, path: Path) -> int:
    """The schema version of the file; a ``ConfigError`` when a newer ftpexport wrote it."""
    # the version first: a ledger of a newer ftpexport is left exactly as it is
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: the ledger was written by a newer ftpexport (schema {version})",
            hint="upgrade ftpexport, or use another --state file",
        )
    return version


def create_or_migrate(db: sqlite3.Connection, version: int) -> None:
    """Create what is missing of the schema of ``SCHEMA_VERSION`` in a file at ``version``."""
    # only what is missing is created: opening a complete ledger writes nothing (a full disk
    # still lets `status` read it)
    db.executescript(_SCHEMA)
    columns = {row["name"] for row in db.execute("PRAGMA table_info(deliveries)")}
    for statement in _MIGRATIONS:
        if statement.split()[-2] not in columns:
            db.execute(statement)
    db.executescript(_INDEXES)
    db.executescript(_REFUSED)
    db.executescript(_SERVERS)
    _add_totals(db)
    if version != SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _add_totals(db: sqlite3.Connection) -> None:
    """Create and fill ``route_totals`` with its triggers, once, in one transaction (another
    process opening the same ledger waits, then finds it done)."""
    exists = "SELECT 1 FROM sqlite_master WHERE name = 'route_totals'"
    if db.execute(exists).fetchone():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if not db.execute(exists).fetchone():
            for statement in _statements(_TOTALS):
                db.execute(statement)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """The statements of ``script`` (a trigger's body keeps its own semicolons)."""
    statements, current = [], ""
    for line in script.strip().splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def portable_statements() -> list[str]:
    """The tables and indexes of the schema in the order they are built, in SQLite's types, without
    its triggers: what the PostgreSQL backend builds too (``postgres/schema.py``)."""
    script = _SCHEMA + ";".join(_MIGRATIONS) + ";" + _INDEXES + _REFUSED + _SERVERS + _TOTALS.split(";")[0]
    return [statement.strip() for statement in script.split(";") if statement.strip()]

"""The PostgreSQL backend of the ledger: a ledger several hosts share (``--state postgresql://...``).

    connection.py   the connections (a psycopg pool), transactions, retries while the database is away, errors
    schema.py       the schema: SQLite's tables in PostgreSQL's types, the hosts and their leases
    ledger.py       ``PostgresLedger``: the queries shared with SQLite, and the leases where the interface asks
    coordination.py ``PostgresCoordination``: claims, connection slots, the breaker, the hosts

Opened by ``open_ledger`` (ledger/__init__.py) for a URL of scheme ``postgresql`` or ``postgres``.
"""

from __future__ import annotations

from .coordination import PostgresCoordination
from .ledger import PostgresLedger

__all__ = ["PostgresCoordination", "PostgresLedger"]

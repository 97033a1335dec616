"""The SQLite backend of the ledger: one file, the queries of each job in a module of its own.

    connection.py   opening the file (0600, WAL, the schema of schema.py), transactions, errors
    deliveries.py   deliveries and their attempts, as the exporter records them
    journal.py      the crash journal: the files of a delivery around their rename
    records.py      record folders: the seen cache and the refusals
    outbox.py       the webhook outbox
    reports.py      what status, history, report and the metrics read

Every query class works on the one ``Connection``; ``SQLiteLedger`` puts them together behind the
interface ``Ledger`` (base.py).
"""

from __future__ import annotations

from .base import Ledger
from .capabilities import Capabilities
from .connection import Connection
from .deliveries import Deliveries
from .journal import Journal
from .outbox import Outbox
from .records import RecordFolders
from .reports import Reports
from .transcripts import Transcripts


class SQLiteLedger(Deliveries, Journal, RecordFolders, Outbox, Reports, Capabilities, Transcripts, Connection, Ledger):
    """The delivery ledger in one SQLite file; safe to share between threads."""

"""The ledger: what was sent to whom, the crash journal, the seen cache and the webhook outbox.

Callers type with ``Ledger`` (the interface, ledger/base.py) and open one with ``open_ledger``,
which picks the backend from the ``--state`` value: today a SQLite file (ledger/sqlite.py). A
backend for URLs of a scheme (``postgresql://...``) is one entry in ``_URL_BACKENDS``; no caller
changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import (
    AttemptTrail,
    Delivery,
    FileState,
    Ledger,
    Notification,
    NotificationStatus,
    NotificationTotals,
    RefusalKind,
    RefusedRecord,
    RouteTotals,
    SeenRecord,
    Status,
    now,
)
from .schema import SCHEMA_VERSION
from .sqlite import SQLiteLedger

__all__ = [
    "SCHEMA_VERSION",
    "AttemptTrail",
    "Delivery",
    "FileState",
    "Ledger",
    "Notification",
    "NotificationStatus",
    "NotificationTotals",
    "RefusalKind",
    "RefusedRecord",
    "RouteTotals",
    "SQLiteLedger",
    "SeenRecord",
    "Status",
    "now",
    "open_ledger",
]

#: URL scheme -> the backend that opens a ledger at such a URL (import it inside the function: a
#: backend's driver is needed only by those who use it)
_URL_BACKENDS: dict[str, Callable[[str], Ledger]] = {}

#: ``scheme://...`` (RFC 3986 scheme); anything else is a file path
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_ledger(state: str | Path) -> Ledger:
    """The ledger ``--state`` names: a URL of a known scheme, else the path of a SQLite file."""
    if isinstance(state, str) and (url := _URL.match(state)):
        scheme = url[1].lower()
        backend = _URL_BACKENDS.get(scheme)
        if backend is None:
            known = ", ".join(f"{name}://" for name in sorted(_URL_BACKENDS)) or "none yet"
            raise ConfigError(
                f"--state {_without_credentials(state)}: no ledger backend for URLs of scheme {scheme!r}"
                f" (URL schemes known: {known})",
                hint="pass the path of a SQLite file as --state (e.g. .ftpexport/ledger.sqlite3)",
            )
        return backend(state)
    return SQLiteLedger(Path(state))


def _without_credentials(url: str) -> str:
    """``url`` without its user name and password, to name it in a message."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host, query="", fragment="").geturl()

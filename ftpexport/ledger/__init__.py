"""The ledger: what was sent to whom, the crash journal, the seen cache and the webhook outbox.

Callers type with ``Ledger`` (the interface, ledger/base.py) and open one with ``open_ledger``,
which picks the backend from the ``--state`` value: a SQLite file (ledger/sqlite.py), or a
PostgreSQL database several hosts share (``postgresql://...``, ledger/postgres/). A backend for URLs
of a scheme is one entry in ``_URL_BACKENDS``; no caller changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Ledger
from .coordination import Claim, Coordination, HeldDelivery, HostRow, Solo
from .rows import (
    AttemptTrail,
    AttemptTranscript,
    Delivery,
    FileState,
    LearnedCapabilities,
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
    "DEFAULT_LEASE",
    "SCHEMA_VERSION",
    "AttemptTrail",
    "AttemptTranscript",
    "Claim",
    "Coordination",
    "Delivery",
    "FileState",
    "HeldDelivery",
    "HostRow",
    "LearnedCapabilities",
    "Ledger",
    "Notification",
    "NotificationStatus",
    "NotificationTotals",
    "RefusalKind",
    "RefusedRecord",
    "RouteTotals",
    "SQLiteLedger",
    "SeenRecord",
    "Solo",
    "Status",
    "display_state",
    "is_url",
    "now",
    "open_ledger",
    "state_passwords",
]

#: seconds a host's leases on a shared ledger last without a heartbeat (``--lease``): another host
#: takes a dead host's deliveries over after at most this, plus its next look at the ledger
DEFAULT_LEASE = 20.0

#: URL scheme -> the backend that opens a ledger at such a URL (import it inside the function: a
#: backend's driver is needed only by those who use it)
_URL_BACKENDS: dict[str, Callable[[str, float, float | None], Ledger]] = {}


def _postgres(url: str, lease: float, retry_for: float | None) -> Ledger:
    from .postgres import PostgresLedger

    if retry_for is None:
        return PostgresLedger(url, lease, location=display_state(url))
    return PostgresLedger(url, lease, location=display_state(url), retry_for=retry_for)


_URL_BACKENDS.update(postgresql=_postgres, postgres=_postgres)

#: ``scheme://...`` (RFC 3986 scheme); anything else is a file path
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_ledger(state: str | Path, *, lease: float = DEFAULT_LEASE, retry_for: float | None = None) -> Ledger:
    """The ledger ``--state`` names: a URL of a known scheme, else the path of a SQLite file.
    ``lease``: the seconds of a host's leases on a shared ledger (see ``coordination``);
    ``retry_for``: the seconds a database ledger that cannot be reached is tried again before a
    ``StateError`` (the backend's default when None; a command an operator waits for passes less)."""
    if isinstance(state, str) and (url := _URL.match(state)):
        scheme = url[1].lower()
        backend = _URL_BACKENDS.get(scheme)
        if backend is None:
            known = ", ".join(f"{name}://" for name in sorted(_URL_BACKENDS)) or "none yet"
            raise ConfigError(
                f"--state {display_state(state)}: no ledger backend for URLs of scheme {scheme!r}"
                f" (URL schemes known: {known})",
                hint="pass the path of a SQLite file as --state (e.g. .ftpexport/ledger.sqlite3)",
            )
        return backend(state, lease, retry_for)
    return SQLiteLedger(Path(state))


def is_url(state: str | Path) -> bool:
    """True when ``--state`` is a URL (``scheme://...``), not a file path."""
    return isinstance(state, str) and _URL.match(state) is not None


def display_state(state: str | Path) -> str:
    """``--state`` as it may be shown (messages, logs, ``--json``): a URL keeps its user name, host,
    port, database and query but never a password (``postgresql://USER@HOST:PORT/DB``); a path as is."""
    if not is_url(state):
        return str(state)
    parts = urlsplit(str(state))
    user, at, host = parts.netloc.rpartition("@")
    user = user.partition(":")[0]
    netloc = f"{user}@{host}" if at else host
    query = "&".join(p for p in parts.query.split("&") if p and p.split("=")[0].lower() != "password")
    return parts._replace(netloc=netloc, query=query, fragment="").geturl()


def state_passwords(url: str) -> list[str]:
    """The passwords a ``--state`` URL carries, as written (percent-encoded if they were): after the
    user name, and ``password=`` in its query. Parsed by hand: a URL ``urlsplit`` refuses still has one."""
    rest = url.partition("://")[2]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    query = rest.partition("?")[2].partition("#")[0]
    written = [authority.rpartition("@")[0].partition(":")[2]]
    written += [v for k, _, v in (p.partition("=") for p in query.split("&")) if k.lower() == "password"]
    return [value for value in written if value]

"""What the rest of ftpexport knows of the ledger: its row types, whatever the backend stores them in.

A delivery is one (record id, content hash, destination). It is ``pending`` until every file is
on the server, then ``delivered``; ``failed`` keeps the last error and is parked until someone
requeues it (``ftpexport retry``); ``superseded`` marks an undelivered version of a record that a
newer version replaced. Times are ISO 8601 strings with their UTC offset (``now()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["pending", "delivered", "failed", "superseded"]
FileState = Literal["renaming", "published"]
#: why a record was refused: its folder (vehicle.json, images), its rules (no rule file, no
#: destination), or the names its templates render
RefusalKind = Literal["record", "rules", "naming"]


def now() -> str:
    """The current time, ISO 8601 with its UTC offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Delivery:
    """One delivery: a version of a record (id, content hash) to one destination, and how it went."""

    id: int
    record_id: str
    content_hash: str
    client_id: str
    destination: str
    record_path: str
    status: Status
    attempts: int
    last_error: str | None
    remote_paths: tuple[str, ...]
    bytes: int
    correlation_id: str | None
    created_at: str
    updated_at: str
    delivered_at: str | None
    vin: str | None = None
    user_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**self.__dict__, "remote_paths": list(self.remote_paths)}

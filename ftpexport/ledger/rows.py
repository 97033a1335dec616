"""The ledger's row types, as the rest of ftpexport reads them (``base.Ledger`` returns them).

A delivery is one (record id, content hash, destination). It is ``pending`` until every file is
on the server, then ``delivered``; ``failed`` keeps the last error and is parked until someone
requeues it (``ftpexport retry``); ``superseded`` marks an undelivered version of a record that a
newer version replaced. Times are ISO 8601 strings with their UTC offset (``now()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

Status = Literal["pending", "delivered", "failed", "superseded"]
FileState = Literal["renaming", "published"]
#: why a record was refused: its folder (vehicle.json, images), its rules (no rule file, no
#: destination), or the names its templates render
RefusalKind = Literal["record", "rules", "naming"]
NotificationStatus = Literal["pending", "sent", "failed"]


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


@dataclass(frozen=True)
class SeenRecord:
    """A record folder whose every delivery is done: its files as they were, under which rules."""

    signature: str  # the folder's files: names, sizes, times, inodes
    rules: str  # the fingerprint of the rules it was routed with
    delivery_ids: tuple[int, ...]


# The rows below are plain dicts, JSON-ready as ``status --json``, ``history --json`` and the
# webhook outbox use them; the TypedDicts name their keys.


class RefusedRecord(TypedDict):
    """A record folder refused, and why (``refused``)."""

    record_path: str
    record_id: str | None
    client_id: str | None
    kind: RefusalKind
    reason: str
    rule_file: str | None
    first_seen: str
    last_seen: str
    times: int  # how many times it was refused


class Notification(TypedDict):
    """A webhook notification of the outbox (``due_notifications``, ``notifications``)."""

    id: int
    webhook_id: str
    delivery_id: int | None
    client_id: str
    event: str
    url: str
    payload: str  # the JSON body, as signed
    correlation_id: str | None
    status: NotificationStatus
    attempts: int
    last_error: str | None
    response_code: int | None
    next_at: str
    created_at: str
    updated_at: str
    sent_at: str | None


class AttemptTrail(TypedDict):
    """One attempt with its delivery (``history``): the audit trail."""

    started_at: str
    finished_at: str | None
    result: str | None  # delivered, failed, interrupted; None while it runs
    error: str | None
    bytes: int | None
    correlation_id: str
    client_id: str
    destination: str
    record_id: str
    content_hash: str
    record_path: str
    remote_paths: list[str]  # empty unless this attempt delivered
    delivery_status: Status
    transcript: bool  # its protocol transcript is kept (``transcripts``)


class RouteTotals(TypedDict):
    """The deliveries of one (client, destination) counted (``routes``)."""

    client_id: str
    destination: str
    delivered: int
    pending: int
    failed: int
    last_success: str | None
    oldest_undelivered: str | None
    last_error: str | None  # the newest error of an undelivered delivery
    last_error_at: str | None


class NotificationTotals(TypedDict):
    """The notifications not sent of one (client, endpoint URL) counted (``notification_totals``)."""

    client_id: str
    url: str
    pending: int
    failed: int
    oldest_pending: str | None
    last_error: str | None
    last_error_at: str | None


class LearnedCapabilities(TypedDict):
    """What was learned of one destination's server (``capabilities``), and when."""

    destination: str
    capabilities: dict[str, Any]
    probed_at: str
    changed_at: str


class AttemptTranscript(TypedDict):
    """The protocol transcript of one attempt (``transcripts``), with the attempt it belongs to."""

    attempt_id: int
    delivery_id: int
    destination: str
    correlation_id: str
    started_at: str
    finished_at: str | None
    result: str | None
    error: str | None
    ok: bool
    size: int
    entries: list[dict[str, Any]]

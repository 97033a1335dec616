"""What the rest of ftpexport knows of the ledger: the interface ``Ledger`` (its rows: ``rows.py``).

Callers type with ``Ledger`` and open one with ``open_ledger`` (ftpexport/ledger/__init__.py), which
picks the backend from ``--state``; nothing outside ftpexport/ledger/ speaks SQL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from . import rows
from .coordination import Coordination, Solo


class Ledger(ABC):
    """The ledger as the rest of ftpexport uses it; a backend (``SQLiteLedger``) implements every
    method, safe to call from several threads, each write in one transaction of its own.

    A storage failure the operator can fix (a full or read-only disk) is a ``StateError`` naming
    the ledger and what to do.
    """

    @abstractmethod
    def close(self) -> None:
        """Release the ledger (its connection, its file)."""

    @property
    def coordination(self) -> Coordination:
        """How this process shares the work with the others on the same ledger (``coordination.py``):
        ``Solo`` for a ledger one process holds alone, the default."""
        return _SOLO

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- deliveries and their attempts (the exporter)

    @abstractmethod
    def find(self, record_id: str, content_hash: str, destination: str) -> rows.Delivery | None:
        """The delivery of this version of a record to a destination, if the ledger has it."""

    @abstractmethod
    def open_delivery(
        self,
        *,
        record_id: str,
        content_hash: str,
        client_id: str,
        destination: str,
        record_path: str,
        vin: str | None = None,
        user_id: str | None = None,
    ) -> rows.Delivery:
        """The delivery row for this version, created pending if new; older undelivered versions
        of the same record to the same destination are marked superseded."""

    @abstractmethod
    def get(self, delivery_id: int) -> rows.Delivery:
        """One delivery by id (``KeyError`` when there is none)."""

    @abstractmethod
    def by_ids(self, delivery_ids: Sequence[int]) -> list[rows.Delivery]:
        """The deliveries of these ids (those that exist), in id order."""

    @abstractmethod
    def start_attempt(self, delivery_id: int, correlation_id: str) -> int:
        """Record that an attempt begins; returns the attempt id. A superseded delivery stays superseded."""

    @abstractmethod
    def succeed(self, delivery_id: int, attempt_id: int, remote_paths: list[str], sent: int) -> None:
        """Mark the delivery done: every file is on the server under its final name."""

    @abstractmethod
    def fail(self, delivery_id: int, attempt_id: int, error: str, *, final: bool, sent: int = 0) -> None:
        """Record a failed attempt; ``final`` parks the delivery as failed, else it stays pending
        (a superseded delivery stays superseded)."""

    @abstractmethod
    def withdraw_attempt(self, delivery_id: int, attempt_id: int) -> None:
        """Forget an attempt that never reached the server (a shared ledger's connection slots were all
        taken after all): its row goes and its try is not counted."""

    @abstractmethod
    def defer(self, delivery_id: int, reason: str) -> None:
        """Leave a delivery pending without an attempt, saying why it was not tried."""

    @abstractmethod
    def pending_record_paths(self) -> list[str]:
        """The record folders of pending deliveries, oldest first (what a restart must resume). On a
        shared ledger, only those another host could take now: not held by a live lease, due."""

    @abstractmethod
    def give_up_on_missing(self, record_path: str, reason: str) -> int:
        """Park the pending deliveries of a record folder that no longer exists; returns how many."""

    @abstractmethod
    def close_interrupted(self) -> int:
        """Mark attempts that never finished (the process was killed) as interrupted; returns how many.
        Call it only while holding the ledger's lock file: then no attempt can be running. On a
        shared ledger, only the attempts of deliveries whose holder's lease ran out (any time)."""

    @abstractmethod
    def requeue(
        self, *, client_id: str | None = None, destination: str | None = None, record_id: str | None = None
    ) -> list[rows.Delivery]:
        """Put failed deliveries back to pending with a fresh attempt budget; returns them (their
        attempts stay)."""

    # --- the crash journal: the files of a delivery around their rename

    @abstractmethod
    def mark_files(self, delivery_id: int, states: Mapping[str, rows.FileState]) -> None:
        """Journal files of a delivery, ``{remote_path: state}``, in one transaction: ``renaming``
        before a file's rename, ``published`` after it. With a ``renaming`` among them, a shared
        ledger raises ``ClaimLostError`` (and writes none) when this host no longer holds the delivery."""

    @abstractmethod
    def forget_file(self, delivery_id: int, remote_path: str) -> None:
        """Drop a journal entry: the server answered that the rename did not happen."""

    @abstractmethod
    def file_states(self, delivery_id: int) -> dict[str, rows.FileState]:
        """``{remote_path: state}`` of the files an earlier attempt of this delivery got to rename."""

    # --- record folders whose every delivery is done (skipped without reading them again)

    @abstractmethod
    def seen(self, record_path: str) -> rows.SeenRecord | None:
        """What ``mark_seen`` remembered of a record folder marked done, or None."""

    @abstractmethod
    def mark_seen(self, record_path: str, signature: str, rules: str, delivery_ids: Sequence[int]) -> None:
        """Remember that every delivery of the record folder, as it was (``signature``), is done."""

    # --- record folders refused (invalid vehicle.json, no rule file, a name that renders badly)

    @abstractmethod
    def refuse(
        self,
        record_path: str,
        *,
        kind: rows.RefusalKind,
        reason: str,
        record_id: str | None = None,
        client_id: str | None = None,
        rule_file: str | None = None,
    ) -> None:
        """Remember that a record folder was refused and why; refused again, it counts one more time
        and keeps the latest reason."""

    @abstractmethod
    def clear_refused(self, record_path: str) -> bool:
        """Forget the refusal of a record folder (accepted since, or gone); False when there was none."""

    @abstractmethod
    def refused(self, *, client_id: str | None = None, since: str | None = None) -> list[rows.RefusedRecord]:
        """The refused record folders, last refused first (``since``: refused again since then)."""

    @abstractmethod
    def refused_counts(self) -> dict[str, int]:
        """How many record folders are refused now, by client id ("" when the record could not tell)."""

    # --- webhook notifications (the outbox)

    @abstractmethod
    def add_notification(
        self,
        *,
        webhook_id: str,
        delivery_id: int | None,
        client_id: str,
        event: str,
        url: str,
        payload: str,
        correlation_id: str | None,
    ) -> int:
        """Queue a notification, due now; returns its id."""

    @abstractmethod
    def due_notifications(self, at: str | None = None, limit: int = 100) -> list[rows.Notification]:
        """Pending notifications whose next attempt is due at ``at`` (default now), oldest first."""

    @abstractmethod
    def notification_attempt(
        self, notification_id: int, *, ok: bool, code: int | None, error: str | None, next_at: str | None
    ) -> None:
        """Record one sending attempt: ``ok`` -> sent; else pending again at ``next_at``, or failed when None."""

    @abstractmethod
    def notifications(
        self, *, client_id: str | None = None, status: rows.NotificationStatus | None = None
    ) -> list[rows.Notification]:
        """Notifications, oldest first, optionally filtered."""

    # --- reports (status, history, report, the metrics)

    @abstractmethod
    def deliveries(
        self,
        *,
        status: rows.Status | None = None,
        client_id: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[rows.Delivery]:
        """Deliveries, newest first, optionally filtered (``since``: changed since then, ISO 8601)."""

    @abstractmethod
    def delivered(
        self, *, since: str | None = None, until: str | None = None, client_id: str | None = None
    ) -> list[rows.Delivery]:
        """Deliveries completed in [since, until), oldest first: what was sent to whom."""

    @abstractmethod
    def history(
        self, *, client_id: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[rows.AttemptTrail]:
        """Every attempt started in [since, until) (ISO 8601 UTC), oldest first, with its delivery's
        record, destination, remote paths (once delivered) and status, and whether its transcript is kept."""

    @abstractmethod
    def routes(self, *, client_id: str | None = None, since: str | None = None) -> list[rows.RouteTotals]:
        """One row per (client, destination): delivered, pending and failed counts, the last success,
        the oldest undelivered delivery and the newest error of one (``since``: changed since then)."""

    @abstractmethod
    def oldest_pending(self) -> str | None:
        """When the oldest delivery still pending was created (ISO 8601), or None."""

    @abstractmethod
    def notification_totals(
        self, *, client_id: str | None = None, since: str | None = None
    ) -> list[rows.NotificationTotals]:
        """One row per (client, endpoint URL) with notifications not sent: pending and failed counts, the
        oldest pending one's creation time, and the newest error (``last_error``, ``last_error_at``)."""

    # --- what was learned of the servers: capabilities (capabilities.py), transcripts (transcripts.py)

    @abstractmethod
    def save_capabilities(self, destination: str, capabilities: dict[str, Any]) -> bool:
        """Keep what was learned of ``destination``'s server (a JSON object) with the time; True when it
        differs from what was kept (or nothing was), which also sets ``changed_at``."""

    @abstractmethod
    def capabilities(self, destination: str | None = None) -> dict[str, rows.LearnedCapabilities]:
        """What was learned of each destination's server (or of one), by destination."""

    @abstractmethod
    def save_transcript(
        self,
        attempt_id: int,
        delivery_id: int,
        destination: str,
        entries: Sequence[dict[str, Any]],
        *,
        ok: bool,
        keep_ok: int,
    ) -> None:
        """Keep the protocol transcript of an attempt (entries already redacted). A delivered attempt's
        (``ok``) is kept among the destination's last ``keep_ok`` delivered ones, the older dropped."""

    @abstractmethod
    def transcripts(self, correlation_id: str) -> list[rows.AttemptTranscript]:
        """The transcripts of every attempt of the delivery with ``correlation_id`` (the delivery's or an
        attempt's), oldest first."""

    @abstractmethod
    def correlation_known(self, correlation_id: str) -> bool:
        """Whether a delivery or an attempt has ``correlation_id`` (with a transcript kept or not)."""

    @abstractmethod
    def attempts_with_transcripts(self, attempt_ids: Sequence[int]) -> set[int]:
        """Which of ``attempt_ids`` have a transcript kept."""

    @abstractmethod
    def purge_transcripts(self, before: str) -> int:
        """Drop the transcripts made before ``before`` (ISO 8601); how many were dropped."""


_SOLO = Solo()

"""What the exporter tells the rest of the program while it works: deliveries queued, attempts,
outcomes, and the summary of a batch.

The exporter calls its observers (the progress display, the metrics, the webhook notifier) from
its worker threads. An observer must be quick and must not block an upload: anything slow goes
to a queue of its own. An exception in an observer is logged and changes nothing for the delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import FtpexportError, RecordError, StateError

log = logging.getLogger(__name__)

#: how one attempt of a delivery ended: done (every file is on the server), retry (a failure that
#: may pass: tried again after a backoff), failed (parked) or deferred (not finished, still pending)
Verdict = Literal["done", "retry", "failed", "deferred"]

#: how a delivery settled for this run (``Outcome.result``): delivered / skipped (if_exists: skip) /
#: unchanged (delivered earlier) / failed (parked now) / parked (failed earlier, waiting for
#: ``ftpexport retry``) / deferred (not finished, still pending)
OutcomeResult = Literal["delivered", "skipped", "unchanged", "failed", "parked", "deferred"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one record at one destination."""

    record_id: str
    record_path: str
    client_id: str
    destination: str
    result: OutcomeResult
    remote_paths: tuple[str, ...] = ()
    bytes: int = 0
    error: str | None = None
    correlation_id: str | None = None
    attempts: int = 0
    vin: str | None = None
    user_id: str | None = None
    #: when the delivery ended, ISO 8601 with offset (None for outcomes known from the ledger)
    finished_at: str | None = None
    #: the ledger row of the delivery (None for a record that never reached the ledger)
    delivery_id: int | None = None


@dataclass
class Summary:
    """The result of exporting a batch of records."""

    outcomes: list[Outcome] = field(default_factory=list)
    record_errors: list[RecordError] = field(default_factory=list)
    incomplete: list[Path] = field(default_factory=list)
    #: the ledger or the spool could not be written: the export stopped there (nothing is lost)
    state_error: StateError | None = None

    @property
    def ok(self) -> bool:
        """True when every record found was delivered (or already was) everywhere."""
        return not self.record_errors and self.state_error is None and all(o.result in _DONE for o in self.outcomes)

    def count(self, result: OutcomeResult) -> int:
        return sum(1 for o in self.outcomes if o.result == result)


_DONE = ("delivered", "skipped", "unchanged")


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt, as observers see it."""

    correlation_id: str
    client_id: str
    destination: str
    record_id: str


class Observer:
    """Hooks of the exporter; every method does nothing unless overridden."""

    def queued(self, client_id: str, destination: str, record_id: str, estimated_bytes: int) -> None:
        """A delivery was queued; ``estimated_bytes`` is what it will send, before packaging."""

    def attempt_started(self, attempt: Attempt) -> None:
        """A worker starts an attempt."""

    def sent(self, attempt: Attempt, n: int) -> None:
        """``n`` more bytes of the attempt went on the wire."""

    def attempt_ended(self, attempt: Attempt, verdict: Verdict, seconds: float, sent: int) -> None:
        """The attempt ended: ``done``, ``retry``, ``failed`` or ``deferred``."""

    def outcome(self, outcome: Outcome) -> None:
        """A delivery is settled for this run (also for records the ledger says need nothing)."""

    def refused(self, record_path: str, client_id: str | None, kind: str) -> None:
        """A record folder was refused: ``record`` (vehicle.json, images), ``rules`` or ``naming``."""


class Observers(Observer):
    """Several observers as one; an observer that raises is logged and skipped."""

    def __init__(self, observers: Iterable[Observer]) -> None:
        self.observers = list(observers)

    def _each(self, method: str, *args: object) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(*args)
            except FtpexportError as exc:  # e.g. the webhook outbox on a full disk: said in one line
                log.error("%s: %s", type(observer).__name__, exc, extra={"observer": type(observer).__name__})
            except Exception:  # an observer's bug must not fail a delivery
                log.exception("an observer failed, please report it", extra={"observer": type(observer).__name__})

    def queued(self, client_id: str, destination: str, record_id: str, estimated_bytes: int) -> None:
        self._each("queued", client_id, destination, record_id, estimated_bytes)

    def attempt_started(self, attempt: Attempt) -> None:
        self._each("attempt_started", attempt)

    def sent(self, attempt: Attempt, n: int) -> None:
        self._each("sent", attempt, n)

    def attempt_ended(self, attempt: Attempt, verdict: Verdict, seconds: float, sent: int) -> None:
        self._each("attempt_ended", attempt, verdict, seconds, sent)

    def outcome(self, outcome: Outcome) -> None:
        self._each("outcome", outcome)

    def refused(self, record_path: str, client_id: str | None, kind: str) -> None:
        self._each("refused", record_path, client_id, kind)


class Callbacks(Observer):
    """The plain callbacks ``on_outcome`` and ``on_bytes`` as an observer."""

    def __init__(self, on_outcome: Callable[[Outcome], None] | None, on_bytes: Callable[[int], None] | None) -> None:
        self._on_outcome = on_outcome
        self._on_bytes = on_bytes

    def sent(self, attempt: Attempt, n: int) -> None:
        if self._on_bytes is not None:
            self._on_bytes(n)

    def outcome(self, outcome: Outcome) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)

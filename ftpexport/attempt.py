"""One attempt of one delivery: package, connect, publish, record the result, and what it leads to.

A failure belongs to the delivery it happened to: it is described in one line (secrets redacted),
recorded in the ledger, logged, and judged: ``retry`` (a transient error, retries left), ``failed``
(parked until ``ftpexport retry``), ``deferred`` (the exporter is stopping, or a file of the record
changed since it was read: still pending). What it says about the destination (a refused
connection, a refused login) goes to the dispatcher's breaker in the ``JobResult``.

A ``StateError`` (the ledger or the spool cannot be written) is not the delivery's: ``run`` hands
it to the exporter (``unrecorded``), which stops.

A ``ClaimLostError`` (a shared ledger gave the delivery to another host while this one could not
renew its lease) is not the delivery's either: the attempt stops before its rename, nothing is
recorded or counted, and the delivery is left to its new holder (``InFlight.lost``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .connections import Connections
from .dispatch import JobResult
from .errors import (
    ClaimLostError,
    ConfigError,
    FtpexportError,
    PermanentError,
    RecordChangedError,
    StateError,
    TooManySessionsError,
    TransientError,
    TransportError,
)
from .events import Attempt, Observer, Summary, Verdict
from .ledger import Ledger
from .plan import Plan
from .publish import publish
from .rules import Route
from .secret import redact
from .slots import SLOT_WAIT, NoSlotError
from .spool import SharedPackages
from .transcripts import keep
from .transport import Upload, transcript

log = logging.getLogger(__name__)


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _describe(exc: BaseException) -> str:
    """A one-line message for any failure of a delivery."""
    if isinstance(exc, TransportError):
        return exc.reason  # the destination is recorded beside the message
    if isinstance(exc, FtpexportError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"local file error: {exc}"
    return f"unexpected error {type(exc).__name__}: {exc}"


def verdict_of(stopped: bool, final: bool) -> Verdict:
    """What a failed attempt leads to: deferred (stopping), failed (parked) or retry."""
    return "deferred" if stopped else "failed" if final else "retry"


@dataclass
class InFlight:
    """A delivery in flight: one version of one record for one destination, queued or being attempted
    in this process (the payload of its dispatcher job). Its row in the ledger is ``ledger.Delivery``."""

    plan: Plan
    route: Route
    remote_dir: str
    delivery_id: int
    summary: Summary | None
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    attempted: bool = False
    #: the last attempt found the delivery claimed by another host (a shared ledger): it is theirs
    lost: bool = False

    @property
    def attempt(self) -> Attempt:
        record = self.plan.record
        return Attempt(self.correlation_id, record.client_id, self.route.key, record.id)

    @property
    def fields(self) -> dict[str, Any]:
        record = self.plan.record
        return {
            "correlation_id": self.correlation_id,
            "client": record.client_id,
            "destination": self.route.key,
            "record_id": record.id,
            "record_path": str(record.folder),
        }


class Attempts:
    """Runs the attempts of an exporter's deliveries (on the dispatcher's worker threads)."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        packages: SharedPackages[Plan],
        connections: Connections,
        events: Observer,
        stopping: threading.Event,
        retries: int,
        finish: Callable[..., None],
        unrecorded: Callable[[InFlight, StateError], JobResult],
        fenced: Callable[[], bool] = lambda: False,
    ) -> None:
        self.ledger = ledger
        self.packages = packages
        self.connections = connections
        self.events = events
        #: set when the exporter stops: a failure then defers the delivery instead of judging it
        self.stopping = stopping
        #: extra attempts after a transient failure, unless the rule file says (``upload.retries``)
        self.retries = retries
        #: ``finish(d, result, **details)``: the delivery is settled for this run (its ``Outcome``)
        self.finish = finish
        #: an attempt the ledger could not record: the exporter stops, the delivery stays pending
        self.unrecorded = unrecorded
        #: True while this host's heartbeat does not reach a shared ledger: a failure then (its
        #: uploads are cut) defers the delivery, as stopping does
        self.fenced = fenced

    def run(self, d: InFlight) -> JobResult:
        """One attempt of ``d``: every failure of the delivery is its result; a ``StateError`` is not."""
        first = not d.attempted
        d.attempted = True
        try:
            attempt_id = self.ledger.start_attempt(d.delivery_id, d.correlation_id)
        except StateError as exc:
            self.packages.put(d.plan, attempted=False, first=first, finished=True)
            return self.unrecorded(d, exc)
        started = time.monotonic()
        sent = [0]  # bytes this attempt put on the wire, also when it fails half way
        seen = d.attempt
        self.events.attempt_started(seen)
        try:
            # what is said with the server, in this thread, goes to this attempt's transcript
            with transcript.recording(transcript.Recorder()):
                return self._started(d, first, attempt_id, started, sent)
        except StateError as exc:
            # the ledger could not record the attempt's end (nothing else writes before the package
            # is put back): the delivery stays pending, a later run sends or resumes it
            self.packages.put(d.plan, attempted=True, first=first, finished=True)
            self.events.attempt_ended(seen, "deferred", time.monotonic() - started, sent[0])
            return self.unrecorded(d, exc)

    def _started(self, d: InFlight, first: bool, attempt_id: int, started: float, sent: list[int]) -> JobResult:
        """The attempt once the ledger has it: package, connect, send, record the result."""
        fields = d.fields
        seen = d.attempt

        def counted(n: int) -> None:
            sent[0] += n
            self.events.sent(seen, n)

        phase = "package"
        try:
            package = self.packages.get(d.plan)
            phase = "connect"
            pool, transport = self.connections.acquire(d.route, d.plan.source)
            fingerprint = transport.server_fingerprint  # SFTP's host key; None for FTP
            transcript.reusing(transport.endpoint, f"host key {fingerprint}" if fingerprint else "")
            phase = "transfer"
            try:
                upload = d.plan.rules.upload
                uploads = publish(transport, package, d.remote_dir, journal=self.ledger, delivery_id=d.delivery_id,
                                  atomic=upload.atomic, if_exists=upload.if_exists, callback=counted)  # fmt: skip
            except BaseException:
                pool.release(transport, reuse=False)
                raise
            pool.release(transport, reuse=True)
        except ClaimLostError as exc:
            return self._lost(d, first, exc, started, sent)
        except NoSlotError as exc:
            return self._no_slot(d, first, attempt_id, exc, started)
        except Exception as exc:  # any failure belongs to this delivery only
            if isinstance(exc, StateError):
                raise  # the ledger or the spool, not the delivery: see run
            message = redact(_describe(exc))
            fenced = self.fenced()
            stopped = self.stopping.is_set() or fenced
            retriable = isinstance(exc, TransientError)
            # a file of the record changed since it was read: not a failure of the delivery; it stays
            # pending and the record is read again (watch: within seconds; run: the next run)
            changed = isinstance(exc, RecordChangedError)
            limit = d.plan.rules.upload.retries
            limit = self.retries if limit is None else limit
            attempts = self.ledger.get(d.delivery_id).attempts
            final = not stopped and not changed and (not retriable or attempts > limit)
            if fenced:
                message = f"cut: this host's heartbeat did not reach the shared ledger: {message}"
            elif stopped:
                message = f"stopped during the attempt: {message}"
            verdict = verdict_of(stopped or changed, final)
            self.ledger.fail(d.delivery_id, attempt_id, message, final=final, sent=sent[0])
            self._keep_transcript(d, attempt_id, ok=False, error=f"{phase}: {message} ({sent[0]} bytes sent)")
            if not isinstance(exc, FtpexportError | OSError):
                log.error("unexpected error, please report it", exc_info=exc, extra=fields)
            remote_path = exc.path if isinstance(exc, TransportError) else None
            log.warning(
                "delivery attempt failed",
                extra={**fields, "attempt": attempts, "host": d.route.destination.host, "remote_dir": d.remote_dir,
                       "remote_path": remote_path, "bytes": sent[0], "result": verdict,
                       "error": message,
                       "retriable": retriable and not final, "phase": phase, "duration_ms": _ms_since(started)},
            )  # fmt: skip
            self.packages.put(d.plan, attempted=True, first=first, finished=verdict != "retry")
            self.events.attempt_ended(seen, verdict, time.monotonic() - started, sent[0])
            if verdict != "retry":
                self.finish(d, "deferred" if verdict == "deferred" else "failed", error=message, attempts=attempts)
            connect_level = phase == "connect" and isinstance(exc, PermanentError | ConfigError)
            # a session refused while others of ours were open: the destination is capped at those
            # (transport.pool), the server is fine; not a failure for the breaker
            at_capacity = isinstance(exc, TooManySessionsError) and exc.sessions_open > 0
            return JobResult(
                verdict,
                destination_fault=(isinstance(exc, TransientError) and not at_capacity) or connect_level,
                pause_long=connect_level,
                error=message,
            )
        return self._succeeded(d, first, attempt_id, started, sent, uploads)

    def _keep_transcript(self, d: InFlight, attempt_id: int, *, ok: bool, error: str | None = None) -> None:
        """The attempt's transcript (``transport.transcript``) into the ledger, its error as the last entry."""
        recorder = transcript.current()
        if recorder is None:
            return
        if error is not None:
            recorder.add("error", error)
        keep(self.ledger, recorder, attempt_id=attempt_id, delivery_id=d.delivery_id, destination=d.route.key, ok=ok)

    def _lost(self, d: InFlight, first: bool, exc: ClaimLostError, started: float, sent: list[int]) -> JobResult:
        """The claim on the delivery was lost before a rename: stop, count nothing, leave it to its holder."""
        d.lost = True
        message = redact(str(exc))
        log.warning(
            "delivery left to the host that holds it now: the claim on it was lost",
            extra={**d.fields, "error": message, "bytes": sent[0], "duration_ms": _ms_since(started)},
        )
        self.packages.put(d.plan, attempted=True, first=first, finished=True)
        self.events.attempt_ended(d.attempt, "deferred", time.monotonic() - started, sent[0])
        self.finish(d, "deferred", error=message, attempts=0)
        return JobResult("deferred", error=message)

    def _no_slot(self, d: InFlight, first: bool, attempt_id: int, exc: NoSlotError, started: float) -> JobResult:
        """No connection slot after all (the idle connection the attempt counted on was closed or taken
        meanwhile, and every slot is held): the attempt never reached the server, so it is withdrawn,
        its try not counted, and the delivery waits for a slot (not a failure of the destination)."""
        self.ledger.withdraw_attempt(d.delivery_id, attempt_id)
        message = redact(str(exc))
        log.info("no connection slot after all; waiting for one", extra={**d.fields, "error": message})
        self.packages.put(d.plan, attempted=True, first=first, finished=False)
        self.events.attempt_ended(d.attempt, "retry", time.monotonic() - started, 0)
        return JobResult("retry", tried=False, delay=SLOT_WAIT, error=message)

    def _succeeded(
        self, d: InFlight, first: bool, attempt_id: int, started: float, sent: list[int], uploads: list[Upload]
    ) -> JobResult:
        """Every file is on the server: record it."""
        fields = d.fields
        seen = d.attempt
        paths = [u.path for u in uploads]
        size = sum(u.size for u in uploads)
        skipped = all(u.skipped for u in uploads)
        self.ledger.succeed(d.delivery_id, attempt_id, paths, size)
        self._keep_transcript(d, attempt_id, ok=True)
        attempts = self.ledger.get(d.delivery_id).attempts
        log.info(
            "already on the server, skipped" if skipped else "delivered",
            extra={**fields, "attempt": attempts, "host": d.route.destination.host, "remote_paths": paths,
                   "bytes": size, "result": "skipped" if skipped else "delivered", "duration_ms": _ms_since(started),
                   "size_checked": all(u.size_checked for u in uploads)},
        )  # fmt: skip
        self.packages.put(d.plan, attempted=True, first=first, finished=True)
        self.events.attempt_ended(seen, "done", time.monotonic() - started, sent[0])
        self.finish(d, "skipped" if skipped else "delivered", remote_paths=tuple(paths), bytes=size,
                    attempts=attempts)  # fmt: skip
        return JobResult("done")

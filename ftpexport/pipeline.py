"""The exporter: feed records to the dispatcher, one job per (record, destination), and finish each.

The path of one record: ``intake`` reads it (complete? unchanged since done? refused?), plans it
(``plan``: routes, names, remote folders) and settles what the ledger has done or parked; the
exporter opens the rest in the ledger and queues one job per destination (``dispatch``); a worker
runs ``attempt``: the package from the spool (built once, shared by its destinations), a connection
from ``connections`` (pooled per destination, within ``jobs``), ``publish`` (the files over that
connection, journalled); ``_finish`` gives the outcome to the observers and the summary, and
remembers the folder once all its deliveries are done.

Each destination is a lane of the dispatcher with its own limit of simultaneous connections, a
shared pool of ``jobs`` workers, backoff between attempts, and a breaker that pauses a destination
that keeps failing. So one slow or dead destination never holds up another.

Every delivery is in the ledger before its first attempt, and every file of it is journalled
around its rename (``publish``), so a process killed at any moment resumes without losing or
repeating work.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .attempt import Attempts, InFlight
from .claims import Claims
from .connections import Connections
from .dispatch import STOPPING, Dispatcher, Job, JobResult, LaneState, Policy
from .errors import StateError
from .events import Callbacks, Observer, Observers, Outcome, OutcomeResult, Summary
from .intake import Intake
from .ledger import DEFAULT_LEASE, Ledger, now
from .plan import Plan, make_package
from .private import local_error, private_folder
from .refusals import Refusals
from .rules import Route, RuleSet
from .secret import SecretSource
from .spool import SharedPackages
from .transport import Endpoint, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """How hard the pipeline works and how patiently it retries."""

    jobs: int = 16
    #: extra attempts after a transient failure before a delivery is parked as failed
    #: (a rule file's ``upload.retries`` wins)
    retries: int = 3
    #: first retry delay in seconds; doubled each time, with jitter, up to ``max_backoff``
    backoff: float = 2.0
    max_backoff: float = 300.0
    #: consecutive failures of a destination that pause it, for ``pause`` seconds (doubled up to ``max_pause``)
    breaker_threshold: int = 3
    pause: float = 30.0
    max_pause: float = 600.0
    #: seconds an unused connection is kept open for the next record
    idle_timeout: float = 30.0
    #: where archives are built; a temporary folder when None
    spool_dir: Path | None = None
    #: deliver record files that have more than one hard link (see ``recordfiles``)
    allow_hardlinks: bool = False
    #: (path, what it is) of ftpexport's own files, never delivered (``recordfiles.own_files``)
    protected: tuple[tuple[Path, str], ...] = ()
    #: seconds a host's leases last on a shared ledger (``--lease``, ``ledger.coordination``)
    lease: float = DEFAULT_LEASE

    def policy(self) -> Policy:
        return Policy(
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            breaker_threshold=self.breaker_threshold,
            breaker_pause=self.pause,
            max_pause=max(self.max_pause, self.pause),
        )


@dataclass
class _Tracked:
    """A record whose deliveries are all queued by one submit: remembered when every one is done."""

    plan: Plan
    rules: str
    remaining: int
    delivery_ids: list[int]
    ok: bool = True


class Exporter:
    """Exports records to their destinations and keeps the ledger.

    ``export(folders)`` sends a batch and returns its summary (``ftpexport run``); ``submit`` queues
    records and returns at once (``ftpexport watch``). ``close`` stops: no new attempt, running
    uploads get ``grace`` seconds, then their connections are cut and they stay pending.

    When the ledger or the spool cannot be written (a full disk), the exporter stops as ``stop``
    does and keeps the error in ``state_error``: whatever was not recorded as done stays pending.
    """

    def __init__(
        self,
        ruleset: RuleSet,
        ledger: Ledger,
        options: Options | None = None,
        *,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        observers: Iterable[Observer] = (),
        secrets: SecretSource | None = None,
        transport_factory: Callable[[Endpoint], Transport] | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.ledger = ledger
        self.options = options or Options()
        self.events = Observers([*observers, Callbacks(on_outcome, on_bytes)])
        self._stopping = threading.Event()
        self._connections = Connections(jobs=self.options.jobs, idle_timeout=self.options.idle_timeout,
                                        lanes=lambda: self._dispatcher.lanes(), secrets=secrets,
                                        transport_factory=transport_factory,
                                        coordination=ledger.coordination, ledger=ledger,
                                        cap=lambda key, n: self._dispatcher.cap(key, n))  # fmt: skip
        self._summary_lock = threading.Lock()
        #: record folders with a job queued or running, and how many
        self._active_paths: Counter[str] = Counter()
        #: records to remember in the ledger once all their jobs are done, by id(plan)
        self._tracked: dict[int, _Tracked] = {}
        #: the first failure to write the ledger or the spool; the exporter stopped at it
        self.state_error: StateError | None = None
        self._refusals = Refusals(ledger)
        self._intake = Intake(ledger, self._refusals, self.events, self.options)
        spool_root = self.options.spool_dir
        try:
            if spool_root is not None:
                private_folder(spool_root)
            # the pid in the name tells a later process on a shared spool root whether it is orphaned
            self._spool = Path(tempfile.mkdtemp(prefix=f"ftpexport-{os.getpid()}-", dir=spool_root))  # 0700
        except OSError as exc:
            raise local_error(spool_root or Path(tempfile.gettempdir()), "create the spool folder", exc,
                              hint="check --state") from exc  # fmt: skip
        self._packages: SharedPackages[Plan] = SharedPackages(
            self._spool, make_package, lambda plan: str(plan.record.folder)
        )
        self._attempts = Attempts(ledger=ledger, packages=self._packages, connections=self._connections,
                                  events=self.events, stopping=self._stopping, retries=self.options.retries,
                                  finish=self._finish, unrecorded=self._unrecorded,
                                  fenced=lambda: self._claims.fenced())  # fmt: skip
        # a shared ledger: claims, the shared breaker, this host's heartbeat (``claims``)
        self._claims = Claims(ledger=ledger, connections=self._connections, packages=self._packages,
                              dispatcher=lambda: self._dispatcher, policy=self.options.policy(),
                              finish=self._finish, unrecorded=self._unrecorded,
                              state_failed=self._state_failed)  # fmt: skip
        self._dispatcher = Dispatcher(self._attempt, self._abandon, workers=self.options.jobs,
                                      policy=self.options.policy())  # fmt: skip

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- feeding

    def prepare(self, folders: Iterable[Path], summary: Summary) -> list[tuple[Plan, list[tuple[Route, str]]]]:
        """Load and plan records; returns what still needs sending, fills in errors, unchanged and parked."""
        work = []
        for folder in folders:
            prepared = self._intake.prepare(folder, self.ruleset, summary)
            if prepared is not None:
                work.append(prepared[:2])
        return work

    def submit(self, folders: Iterable[Path], summary: Summary | None = None) -> Summary:
        """Queue every complete record of ``folders`` that is not delivered yet; returns once queued.

        Each record is queued as soon as it is read, so uploads start while the next ones are read
        and hashed. The deliveries are in the ledger (pending) when this returns. Outcomes of
        queued jobs go to ``summary`` when given, and always to ``on_outcome``.
        """
        prepared = Summary()
        for folder in folders:
            if self.state_error is not None:
                break  # the ledger cannot be written: the records left stay in the inbox for the next run
            try:
                planned = self._intake.prepare(folder, self.ruleset, prepared)
                if planned is not None:
                    self._queue(*planned, summary)
            except StateError as exc:
                self._state_failed(exc)
        if summary is not None:
            with self._summary_lock:
                summary.outcomes += prepared.outcomes
                summary.record_errors += prepared.record_errors
                summary.incomplete += prepared.incomplete
        return prepared

    def _queue(self, plan: Plan, pending: list[tuple[Route, str]], done: list[int], summary: Summary | None) -> None:
        """Open the deliveries of a prepared record in the ledger and queue their jobs."""
        jobs = []
        for route, remote_dir in pending:
            ident = (plan.record.id, plan.record.content_hash, route.key)
            if self._dispatcher.busy(ident):
                continue  # queued or running already (a rescan found it again)
            delivery = self.ledger.open_delivery(
                record_id=plan.record.id,
                content_hash=plan.record.content_hash,
                client_id=plan.record.client_id,
                destination=route.key,
                record_path=str(plan.record.folder),
                vin=plan.record.data.vin,
                user_id=plan.record.user_id,
            )
            if delivery.status in ("delivered", "failed"):
                continue  # a job finished it between prepare() and here
            payload = InFlight(plan, route, remote_dir, delivery.id, summary)
            jobs.append(Job(route.key, ident, self._connections.limit(route), payload))
        if not jobs:
            return
        if plan.signature is not None and len(jobs) == len(pending):
            # every delivery of the record is ours: when all are done, the folder is remembered
            ids = done + [job.payload.delivery_id for job in jobs]
            with self._summary_lock:
                self._tracked[id(plan)] = _Tracked(plan, self.ruleset.fingerprint, len(jobs), ids)
        self._packages.expect(plan, len(jobs))
        with self._summary_lock:
            self._active_paths[str(plan.record.folder)] += len(jobs)
        estimate = sum(image.size for image in plan.record.images)
        for job in jobs:
            self.events.queued(plan.record.client_id, job.lane, plan.record.id, estimate)
            if not self._dispatcher.submit(job):
                self._abandon(job, STOPPING)

    def export(self, folders: Iterable[Path]) -> Summary:
        """Send every complete record of ``folders`` that the ledger has not delivered yet; wait for it.

        Returns when every job ran, or waits only for destinations paused by the breaker: those
        deliveries stay pending (``deferred``) for the next run.
        """
        summary = Summary()
        self.forget_vanished_refusals()
        self.submit(folders, summary)
        self._dispatcher.drain()
        summary.state_error = self.state_error
        return summary

    def pending_folders(self) -> list[Path]:
        """Record folders with pending deliveries that no job is handling (a restart, ``ftpexport retry``)."""
        folders = []
        with self._summary_lock:
            active = set(self._active_paths)
        try:
            for raw in self.ledger.pending_record_paths():
                if raw in active:
                    continue
                folder = Path(raw)
                if not (folder / "vehicle.json").is_file():
                    count = self.ledger.give_up_on_missing(raw, f"the record folder is gone: {raw}")
                    log.error("pending deliveries parked: the record folder is gone",
                              extra={"record_path": raw, "deliveries": count})  # fmt: skip
                    continue
                folders.append(folder)
        except StateError as exc:
            self._state_failed(exc)
            return []
        return folders

    def forget_vanished_refusals(self) -> None:
        """Refused record folders whose vehicle.json is gone leave the ledger's list."""
        try:
            self._refusals.forget_vanished()
        except StateError as exc:
            self._state_failed(exc)

    def housekeeping(self) -> None:
        """Close connections idle for longer than ``idle_timeout``; forget refused folders that are gone;
        on a shared ledger, close the attempts of hosts whose lease ran out (their deliveries are
        then taken over through ``pending_folders``)."""
        self._connections.reap()
        self.forget_vanished_refusals()
        self._claims.housekeeping()

    def paused(self) -> dict[str, tuple[float, str | None]]:
        """Destinations paused by the breaker: ``{destination: (seconds left, last error)}``."""
        return self._dispatcher.paused()

    def lanes(self) -> dict[str, LaneState]:
        """Every destination seen so far: deliveries queued and running, breaker state."""
        return self._dispatcher.lanes()

    def stop(self, grace: float | None = None) -> None:
        """Start nothing new; running uploads get ``grace`` seconds (None: all they need), then their
        connections are cut. Whatever did not finish stays pending in the ledger."""
        self._stopping.set()
        self._dispatcher.stop()
        if not self._dispatcher.wait_idle(grace):
            log.warning("cutting the uploads still running; they stay pending", extra={"grace_seconds": grace})
            self._connections.abort_active()

    def close(self, grace: float | None = None) -> None:
        """``stop(grace)``, then end the workers, close every connection and remove the spool."""
        self.stop(grace)
        self._dispatcher.close()
        self._claims.close()
        self._connections.close()
        self._packages.close()
        shutil.rmtree(self._spool, ignore_errors=True)

    # --- one attempt

    def _attempt(self, job: Job) -> JobResult:
        """One attempt of one delivery; never raises."""
        with self._connections.attempt():
            return self._claims.run(job, self._attempts.run)

    def _abandon(self, job: Job, reason: str) -> None:
        """A job that will not run now: its delivery stays pending for the next run or restart."""
        d: InFlight = job.payload
        if self.state_error is not None and reason == STOPPING:
            reason = self._unrecorded_reason()
        try:
            self.ledger.defer(d.delivery_id, reason)
        except StateError as exc:
            self._state_failed(exc)  # pending it was, pending it stays
        self._packages.put(d.plan, attempted=False, first=not d.attempted, finished=True)
        log.warning("delivery deferred", extra={**d.fields, "reason": reason})
        self._finish(d, "deferred", error=reason, attempts=self._attempts_of(d))

    def _unrecorded(self, d: InFlight, exc: StateError) -> JobResult:
        """An attempt the ledger could not record: the exporter stops, the delivery stays pending."""
        self._state_failed(exc)
        reason = self._unrecorded_reason()
        log.warning("delivery deferred", extra={**d.fields, "reason": reason})
        self._finish(d, "deferred", error=reason, attempts=self._attempts_of(d))
        return JobResult("deferred", error=reason)

    def _unrecorded_reason(self) -> str:
        message = self.state_error.message if self.state_error is not None else "the ledger cannot be written"
        return f"not finished: {message}; still pending, the next run tries again"

    def _attempts_of(self, d: InFlight) -> int:
        try:
            return self.ledger.get(d.delivery_id).attempts
        except StateError:
            return 0  # for the outcome only: the ledger keeps the real count

    def _state_failed(self, exc: StateError) -> None:
        """The ledger or the spool cannot be written: keep the first such error and stop as ``stop``
        does (no new attempt; queued deliveries stay pending). Every later attempt would fail the
        same way, and one that did not would leave nothing in the ledger to show for it."""
        with self._summary_lock:
            if self.state_error is not None:
                return
            self.state_error = exc
        self._stopping.set()
        self._dispatcher.stop()

    def _finish(self, d: InFlight, result: OutcomeResult, **details: Any) -> None:
        record = d.plan.record
        outcome = Outcome(
            record.id, str(record.folder), record.client_id, d.route.key, result,
            correlation_id=d.correlation_id, vin=record.data.vin, user_id=record.user_id, finished_at=now(),
            delivery_id=d.delivery_id, **details,
        )  # fmt: skip
        done = None
        with self._summary_lock:
            if d.summary is not None:
                d.summary.outcomes.append(outcome)
            path = str(record.folder)
            self._active_paths[path] -= 1
            if self._active_paths[path] <= 0:
                del self._active_paths[path]
            tracked = self._tracked.get(id(d.plan))
            if tracked is not None:
                tracked.remaining -= 1
                tracked.ok = tracked.ok and result in ("delivered", "skipped")
                if tracked.remaining <= 0:
                    del self._tracked[id(d.plan)]
                    done = tracked if tracked.ok else None
        if done is not None and d.plan.signature is not None:
            try:
                self.ledger.mark_seen(path, d.plan.signature, done.rules, done.delivery_ids)
            except StateError as exc:
                self._state_failed(exc)  # only a shortcut for the next run is lost: it reads the record again
        self.events.outcome(outcome)

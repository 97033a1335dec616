"""Each attempt on a shared ledger: claimed first, released after, and its verdict told to the
breaker every host shares (``ledger.coordination``).

Before an attempt, a connection slot (unless an idle connection waits) and the claim of the
delivery. What a refusal leads to:

- no slot, or the claim refused with a wait (a backoff persisted by another host, a paused
  destination, the probe of another host): the job is requeued after the wait, no try counted, the
  breaker untouched; a paused destination pauses the local lane too, a missing slot holds it;
- the claim refused as settled (delivered, failed, superseded meanwhile): the job is dropped;
- held by another host (a holder and no wait): the job is dropped here ("deferred: being sent by
  HOST"); should that host die, the takeover scan finds the delivery again.

After the attempt the claim is released, with the retry's backoff when it will be tried again (so
no host tries it sooner), except when the claim was lost (the delivery is its new holder's). A
success, and a probe the destination answered, tell the shared breaker the destination is fine;
a failure of the destination counts there, and a pause it answers pauses the local lane as well.

With a ledger one process holds alone (``Solo``) every claim is granted and nothing is shared:
the attempt runs exactly as without this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from .attempt import InFlight
from .cluster import Heartbeat
from .connections import Connections
from .dispatch import Dispatcher, Job, JobResult, Policy
from .errors import FtpexportError, StateError
from .events import OutcomeResult
from .ledger import Claim, Ledger
from .plan import Plan
from .slots import SLOT_WAIT
from .spool import SharedPackages

log = logging.getLogger(__name__)

#: seconds before a job refused without a wait of its own (a probe under way elsewhere) is tried again
RECLAIM_AFTER = 1.0


class Claims:
    """Claims, releases and the shared breaker around the attempts of an exporter."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        connections: Connections,
        packages: SharedPackages[Plan],
        dispatcher: Callable[[], Dispatcher],
        policy: Policy,
        finish: Callable[..., None],
        unrecorded: Callable[[InFlight, StateError], JobResult],
        state_failed: Callable[[StateError], None],
    ) -> None:
        self.ledger = ledger
        self.coordination = ledger.coordination
        self.connections = connections
        self.packages = packages
        self._dispatcher = dispatcher
        self.policy = policy
        self.finish = finish
        self.unrecorded = unrecorded
        self.state_failed = state_failed
        #: this host's heartbeat on a shared ledger, which fences it when it stops reaching the ledger
        self.heartbeat = Heartbeat(self.coordination, self._fence).start() if self.coordination.shared else None

    def fenced(self) -> bool:
        """True while this host's heartbeat does not reach the shared ledger (it claims nothing)."""
        return self.heartbeat is not None and not self.heartbeat.holding

    def _fence(self) -> None:
        """The heartbeat stopped reaching the shared ledger: this host's leases may be taken over, so
        its uploads are cut (they stay pending) and its idle connections closed (their slots too)."""
        self.connections.abort_active()
        self.connections.close_idle()

    def housekeeping(self) -> None:
        """On a shared ledger: close the attempts of the hosts whose lease ran out; their deliveries
        are then taken over (``Exporter.pending_folders``)."""
        if not self.coordination.shared:
            return
        try:
            closed = self.ledger.close_interrupted()
        except StateError as exc:
            self.state_failed(exc)
            return
        if closed:
            log.warning("attempts of a host that stopped answering closed; its deliveries are taken over",
                        extra={"attempts": closed})  # fmt: skip

    def close(self) -> None:
        """Stop the heartbeat."""
        if self.heartbeat is not None:
            self.heartbeat.close()

    def run(self, job: Job, attempt: Callable[[InFlight], JobResult]) -> JobResult:
        """``attempt(d)`` of the job's delivery if this host may attempt it now (see the module)."""
        d: InFlight = job.payload
        if not self.coordination.shared:
            return attempt(d)
        if self.heartbeat is not None and not self.heartbeat.holding:
            return JobResult("retry", tried=False, delay=self.heartbeat.interval,
                             error="this host's heartbeat does not reach the shared ledger")  # fmt: skip
        key = d.route.key
        try:
            if not self._reserve(d):
                self._dispatcher().hold(key, SLOT_WAIT)
                return JobResult("retry", tried=False, delay=SLOT_WAIT, error="no free connection slot")
            claim = self.coordination.claim(d.delivery_id, key)
        except StateError as exc:
            return self._unclaimed(d, exc)
        if not claim.ok:
            return self._refused(d, claim)
        try:
            result = attempt(d)
        finally:
            self._unreserve()
        if d.lost:
            return result  # the delivery is its new holder's: nothing to release, nothing to count
        retry_in = self._after(job, d, claim, result)
        return result if retry_in is None else replace(result, delay=retry_in)

    def _reserve(self, d: InFlight) -> bool:
        """A connection slot for the attempt (see ``Connections.reserve``); a destination that cannot
        be opened at all (a secret missing) is the attempt's failure, met and recorded in it."""
        try:
            return self.connections.reserve(d.route, d.plan.source)
        except StateError:
            raise
        except FtpexportError:
            return True

    # --- refusals

    def _unclaimed(self, d: InFlight, exc: StateError) -> JobResult:
        self._unreserve()
        self.packages.put(d.plan, attempted=False, first=not d.attempted, finished=True)
        return self.unrecorded(d, exc)

    def _unreserve(self) -> None:
        try:
            self.connections.unreserve()
        except StateError as exc:
            self.state_failed(exc)

    def _refused(self, d: InFlight, claim: Claim) -> JobResult:
        self._unreserve()
        key = d.route.key
        # held by another host: it sends it (a refusal that names a host AND a wait, such as the
        # probe of the destination by another host, is a wait)
        if claim.settled or (claim.holder not in (None, self.coordination.name) and claim.wait <= 0):
            return self._drop(d, claim)
        delay = max(claim.wait, RECLAIM_AFTER)
        if claim.wait > 0:
            try:
                paused = self.coordination.paused().get(key)
            except StateError as exc:
                self.state_failed(exc)
                paused = None
            if paused is not None:
                self._dispatcher().pause(key, max(paused[0], RECLAIM_AFTER), paused[1])
        log.debug("delivery not claimed, waiting",
                  extra={**d.fields, "reason": claim.reason, "wait_seconds": round(delay, 1)})  # fmt: skip
        return JobResult("retry", tried=False, delay=delay, error=claim.reason)

    def _drop(self, d: InFlight, claim: Claim) -> JobResult:
        """A job this host will not attempt: settled meanwhile, or being sent by another host."""
        result: OutcomeResult = "deferred"
        attempts = 0
        try:
            delivery = self.ledger.get(d.delivery_id)
            attempts = delivery.attempts
        except (StateError, KeyError):
            delivery = None
        if claim.settled and delivery is not None:
            status = delivery.status
            result = "unchanged" if status == "delivered" else "parked" if status == "failed" else result
        reason = claim.reason or "settled"
        if not claim.settled:
            reason = f"deferred: being sent by {claim.holder}"
        self.packages.put(d.plan, attempted=False, first=not d.attempted, finished=True)
        log.info("delivery left to another host" if not claim.settled else "delivery settled meanwhile",
                 extra={**d.fields, "reason": reason, "holder": claim.holder})  # fmt: skip
        self.finish(d, result, error=None if result == "unchanged" else reason, attempts=attempts)
        return JobResult("deferred", tried=False, error=reason)

    # --- after an attempt

    def _release(self, d: InFlight) -> None:
        try:
            self.coordination.release(d.delivery_id)
        except StateError as exc:
            self.state_failed(exc)

    def _after(self, job: Job, d: InFlight, claim: Claim, result: JobResult) -> float | None:
        """Release the claim, tell the shared breaker; returns the retry's backoff (None: no retry)."""
        key = d.route.key
        if not result.tried:
            # withdrawn before it reached the server (no connection slot after all): let go, and the
            # lane waits for a slot as when none could be reserved
            self._release(d)
            self._dispatcher().hold(key, SLOT_WAIT)
            return None
        retry_in = self.policy.delay(job.tries) if result.verdict == "retry" else None
        try:
            self.coordination.release(d.delivery_id, retry_in=retry_in)
            answered = claim.probe and result.verdict == "failed" and not result.destination_fault
            if result.verdict == "done" or answered:
                self.coordination.destination_ok(key)
            elif result.destination_fault:
                p = self.policy
                pause = self.coordination.destination_failed(
                    key, result.error or "failed", threshold=p.breaker_threshold, pause=p.breaker_pause,
                    max_pause=p.max_pause, long=result.pause_long,
                )  # fmt: skip
                if pause > 0:
                    self._dispatcher().pause(key, pause, result.error)
        except StateError as exc:
            self.state_failed(exc)
        return retry_in

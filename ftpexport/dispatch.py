"""Scheduling: one lane per destination, a shared pool of workers, backoff and a circuit breaker.

Each destination (lane) has its queue of jobs and a limit of jobs running at once (its
``max_connections``). ``workers`` threads take jobs round-robin over the lanes that can run one,
so a destination with a thousand queued records does not starve the others.

A failed job that may succeed later waits in its lane until its backoff delay is over; no worker
sleeps meanwhile. A lane whose jobs keep failing for reasons of the destination (connection
refused, timeouts, login refused) is paused: the breaker opens for ``breaker_pause`` seconds,
doubled at each new trip up to ``max_pause``; then one job probes the destination, and closes
the breaker when it succeeds. A paused lane takes no worker at all. The delays and settings: ``backoff.py``.

This module knows nothing of records or servers: a job is run by the ``handler`` given to the
Dispatcher, which answers with a ``JobResult``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from .backoff import Policy
from .events import Verdict

log = logging.getLogger(__name__)

#: why a queued job was not run: the process is stopping
STOPPING = "not tried: ftpexport was stopping"


@dataclass
class Job:
    """One unit of work for one lane."""

    lane: str
    #: jobs with the same ident are not queued twice
    ident: Hashable
    #: how many jobs of this lane may run at once
    limit: int
    payload: Any = None
    #: attempts started by this dispatcher
    tries: int = 0
    not_before: float = 0.0


@dataclass(frozen=True)
class JobResult:
    """What one run of a job came to, as the scheduler needs it: the attempt's ``Verdict`` and what
    the failure says about the destination (for the backoff and the breaker)."""

    verdict: Verdict
    #: the failure says something about the destination, not only this job (counts for the breaker)
    destination_fault: bool = False
    #: a failure that will not go away soon (login refused): open the breaker for ``max_pause`` at once
    pause_long: bool = False
    error: str | None = None
    #: False: the job was not attempted (a shared ledger refused its claim, no connection slot was
    #: free): no try is counted and the breaker is left alone; ``retry`` then requeues it
    tried: bool = True
    #: retry: seconds before the job runs again (the policy's backoff when None)
    delay: float | None = None


@dataclass(frozen=True)
class LaneState:
    """A lane as the outside sees it (progress display, metrics, health)."""

    queued: int
    active: int
    #: seconds until a paused lane resumes; 0 when it is not paused
    paused_for: float
    #: times the breaker opened in a row; 0 when the destination answers
    trips: int
    last_error: str | None


@dataclass
class _Lane:
    key: str
    limit: int = 1
    #: at most this many at once whatever ``limit`` says: the server refused more sessions (``cap``)
    cap: int | None = None
    ready: deque[Job] = field(default_factory=deque)
    delayed: list[tuple[float, int, Job]] = field(default_factory=list)
    active: int = 0
    failures: int = 0
    trips: int = 0
    paused_until: float = 0.0
    #: no job of the lane starts before this (a wait for a connection slot); not a pause
    held_until: float = 0.0
    last_error: str | None = None

    def queued(self) -> int:
        return len(self.ready) + len(self.delayed)

    def capacity(self) -> int:
        # after a pause, a single job probes the destination
        return 1 if self.trips else min(self.limit, self.cap or self.limit)

    def take(self, now: float) -> Job | None:
        if self.delayed and self.delayed[0][0] <= now:
            return heapq.heappop(self.delayed)[2]
        if self.ready:
            return self.ready.popleft()
        return None

    def wake_at(self, now: float) -> float | None:
        """When this lane may have a runnable job, if it has work at all."""
        if not self.queued():
            return None
        if self.paused_until > now or self.held_until > now:
            return max(self.paused_until, self.held_until)
        if self.ready:
            return now
        return self.delayed[0][0]

    def drain_jobs(self) -> list[Job]:
        jobs = list(self.ready) + [entry[2] for entry in self.delayed]
        self.ready.clear()
        self.delayed.clear()
        return jobs


class Dispatcher:
    """Runs jobs on ``workers`` threads, lane by lane, until ``close``."""

    def __init__(
        self,
        handler: Callable[[Job], JobResult],
        abandon: Callable[[Job, str], None],
        *,
        workers: int,
        policy: Policy | None = None,
    ) -> None:
        self._handler = handler
        self._abandon = abandon
        self.policy = policy or Policy()
        self._cond = threading.Condition()
        self._lanes: dict[str, _Lane] = {}
        self._idents: set[Hashable] = set()
        self._inflight = 0
        self._rr = 0
        self._seq = itertools.count()
        self._stopping = False
        self._closing = False
        self._threads = [
            threading.Thread(target=self._work, name=f"ftpexport-worker-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    # --- feeding

    def submit(self, job: Job) -> bool:
        """Queue a job; False when a job with the same ident is queued or running, or after ``stop``."""
        with self._cond:
            if self._stopping or job.ident in self._idents:
                return False
            lane = self._lanes.get(job.lane)
            if lane is None:
                lane = self._lanes[job.lane] = _Lane(job.lane)
            lane.limit = job.limit  # the latest rules win
            self._idents.add(job.ident)
            lane.ready.append(job)
            self._cond.notify()
        return True

    def busy(self, ident: Hashable) -> bool:
        """True while a job with this ident is queued or running."""
        with self._cond:
            return ident in self._idents

    def paused(self) -> dict[str, tuple[float, str | None]]:
        """``{lane: (seconds until it resumes, last error)}`` of the paused lanes."""
        now = time.monotonic()
        with self._cond:
            return {k: (v.paused_until - now, v.last_error) for k, v in self._lanes.items() if v.paused_until > now}

    def lanes(self) -> dict[str, LaneState]:
        """A snapshot of every lane."""
        now = time.monotonic()
        with self._cond:
            return {
                key: LaneState(lane.queued(), lane.active, max(0.0, lane.paused_until - now), lane.trips,
                               lane.last_error)
                for key, lane in self._lanes.items()
            }  # fmt: skip

    def cap(self, key: str, sessions: int) -> None:
        """Run at most ``sessions`` jobs of lane ``key`` at once from now on, whatever its jobs' limit
        (the destination's server refused more sessions)."""
        with self._cond:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane(key)
            lane.cap = max(1, sessions)

    def hold(self, key: str, seconds: float) -> None:
        """Start no job of lane ``key`` for ``seconds`` (waiting for a connection slot another host
        holds); unlike a pause, a batch run waits for it (``drain``)."""
        with self._cond:
            lane = self._lanes.get(key)
            if lane is not None:
                lane.held_until = max(lane.held_until, time.monotonic() + seconds)
                self._cond.notify_all()

    def pause(self, key: str, seconds: float, error: str | None) -> None:
        """Pause lane ``key`` for ``seconds``: the breaker shared by the hosts of a ledger paused its
        destination (``ledger.coordination``); a batch run gives up on its jobs as on a local pause."""
        with self._cond:
            lane = self._lanes.get(key)
            if lane is not None:
                lane.paused_until = max(lane.paused_until, time.monotonic() + seconds)
                lane.last_error = error or lane.last_error
                self._cond.notify_all()

    # --- waiting

    def drain(self) -> None:
        """Wait until every job ran, except those of paused lanes: those are abandoned (batch runs).

        A run ends when nothing can make progress without waiting for a destination's pause to end,
        so its duration is bounded by timeouts and pauses, not by the jobs queued behind a dead server.
        """
        with self._cond:
            while True:
                now = time.monotonic()
                runnable = any(lane.queued() and lane.paused_until <= now for lane in self._lanes.values())
                if self._inflight == 0 and not runnable:
                    break
                self._cond.wait(timeout=self._wait_time(now))
            leftovers = []
            for lane in self._lanes.values():
                reason = (
                    f"not tried again in this run: the destination is paused for {lane.paused_until - now:.0f} s "
                    f"after repeated failures (last: {lane.last_error}); still pending, the next run tries again"
                )
                leftovers += [(job, reason) for job in lane.drain_jobs()]
            for job, _ in leftovers:
                self._idents.discard(job.ident)
        for job, reason in leftovers:
            self._abandon(job, reason)

    def stop(self) -> None:
        """Take no new job; queued jobs are abandoned; running jobs go on (see ``wait_idle``)."""
        with self._cond:
            self._stopping = True
            leftovers = [job for lane in self._lanes.values() for job in lane.drain_jobs()]
            for job in leftovers:
                self._idents.discard(job.ident)
            self._cond.notify_all()
        for job in leftovers:
            self._abandon(job, STOPPING)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job is running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._inflight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(timeout=remaining)
        return True

    def close(self) -> None:
        """Stop, wait for the running jobs, and end the worker threads."""
        self.stop()
        self.wait_idle()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    # --- workers

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                result = self._handler(job)
            except Exception as exc:  # a bug in the handler must not kill the worker
                log.exception("unexpected error in a delivery, please report it")
                result = JobResult("failed", error=f"unexpected error {type(exc).__name__}: {exc}")
            self._finish(job, result)

    def _next(self) -> Job | None:
        with self._cond:
            while True:
                if self._closing:
                    return None
                now = time.monotonic()
                if not self._stopping:
                    job = self._pick(now)
                    if job is not None:
                        return job
                self._cond.wait(timeout=self._wait_time(now))

    def _pick(self, now: float) -> Job | None:
        lanes = list(self._lanes.values())
        for i in range(len(lanes)):
            lane = lanes[(self._rr + i) % len(lanes)]
            if lane.active >= lane.capacity() or lane.paused_until > now or lane.held_until > now:
                continue
            job = lane.take(now)
            if job is None:
                continue
            self._rr = (self._rr + i + 1) % len(lanes)
            lane.active += 1
            self._inflight += 1
            job.tries += 1
            return job
        return None

    def _wait_time(self, now: float) -> float:
        wakes = [w for w in (lane.wake_at(now) for lane in self._lanes.values()) if w is not None and w > now]
        return max(0.01, min([*wakes, now + 1.0]) - now)

    def _finish(self, job: Job, result: JobResult) -> None:
        abandoned = False
        with self._cond:
            lane = self._lanes[job.lane]
            lane.active -= 1
            self._inflight -= 1
            now = time.monotonic()
            if not result.tried:
                job.tries -= 1
            if result.verdict == "retry" and self._stopping:
                abandoned = True
                self._idents.discard(job.ident)
            elif result.verdict == "retry":
                delay = self.policy.delay(job.tries) if result.delay is None else result.delay
                job.not_before = now + delay
                heapq.heappush(lane.delayed, (job.not_before, next(self._seq), job))
            else:
                self._idents.discard(job.ident)
            if result.tried:
                self._breaker(lane, result, now)
            self._cond.notify_all()
        if abandoned:
            self._abandon(job, "stopped before it could be tried again")

    def _breaker(self, lane: _Lane, result: JobResult, now: float) -> None:
        if result.verdict == "done":
            if lane.trips:
                log.info("destination answers again; resuming", extra={"destination": lane.key})
            lane.failures = lane.trips = 0
            return
        if not result.destination_fault:
            return
        lane.last_error = result.error
        if lane.paused_until > now:
            return  # a job that was running when the breaker opened: the pause holds already
        lane.failures += 1
        if lane.failures < self.policy.breaker_threshold and not lane.trips and not result.pause_long:
            return
        lane.trips += 1
        lane.failures = 0
        if result.pause_long:
            pause = self.policy.max_pause
        else:
            pause = min(self.policy.breaker_pause * 2 ** (lane.trips - 1), self.policy.max_pause)
        lane.paused_until = max(lane.paused_until, now + pause)
        log.warning(
            "destination paused after repeated failures",
            extra={"destination": lane.key, "pause_seconds": round(pause, 1), "queued": lane.queued(),
                   "error": result.error},
        )  # fmt: skip

"""An in-memory shared ledger for the offline tests of the cluster mode: ``FakeCluster`` is what the
database would hold (claims, backoffs, connection slots, the breaker, hosts: every lease with its
expiry on the database's clock: this machine's monotonic clock, which a test moves ahead with
``FakeCluster.advance``), ``FakeCoordination`` one host's view of it (the contract of
``ledger.coordination.Coordination``), and ``FencedLedger`` a SQLite ledger that answers for a
shared one: its ``coordination`` is a host of the fake cluster, and its crash journal is fenced
(``mark_files`` of a delivery this host no longer holds raises ``ClaimLostError``).

Every call is logged in ``FakeCluster.calls`` as ``(host, method, args...)``; ``refuse_claims``
and ``on_take_slot`` let a test make the other hosts act at a given moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftpexport.errors import ClaimLostError, StateError
from ftpexport.ledger import Claim, Coordination, FileState, HeldDelivery, HostRow, SQLiteLedger


@dataclass
class _Breaker:
    failures: int = 0
    trips: int = 0
    paused_until: float = 0.0
    last_error: str | None = None
    #: (host, delivery) of the probe under way once the pause ended
    probe: tuple[str, int] | None = None


@dataclass
class FakeCluster:
    """The shared state of every host; ``now`` is the database's clock (seconds)."""

    #: seconds the test moved the clock ahead
    offset: float = 0.0
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: delivery -> (holder, lease until)
    claims: dict[int, tuple[str, float]] = field(default_factory=dict)
    #: delivery -> no claim before (a persisted backoff)
    not_before: dict[int, float] = field(default_factory=dict)
    #: deliveries with nothing left to do (delivered, failed)
    settled: set[int] = field(default_factory=set)
    #: (destination, slot) -> (holder, lease until)
    slots: dict[tuple[str, int], tuple[str, float]] = field(default_factory=dict)
    breakers: dict[str, _Breaker] = field(default_factory=dict)
    #: host -> heartbeat at
    hosts: dict[str, float] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    #: delivery -> Claims to answer first (then the model decides)
    refuse_claims: dict[int, list[Claim]] = field(default_factory=dict)
    #: called (host, destination) when a take_slot finds no free slot
    on_take_slot: Callable[[str, str], None] | None = None
    #: the database cannot be reached (every call raises StateError)
    down: bool = False

    @property
    def now(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def host(self, name: str, lease: float = 20.0) -> FakeCoordination:
        return FakeCoordination(self, name, lease)

    def live(self, until: float) -> bool:
        return until > self.now

    def holder(self, delivery_id: int) -> str | None:
        with self.lock:
            held = self.claims.get(delivery_id)
            return held[0] if held is not None and self.live(held[1]) else None

    def count(self, method: str, host: str | None = None) -> int:
        return sum(1 for c in self.calls if c[1] == method and (host is None or c[0] == host))

    def slots_of(self, host: str, destination: str) -> list[int]:
        with self.lock:
            return sorted(s for (d, s), (h, until) in self.slots.items() if d == destination and h == host
                          and self.live(until))  # fmt: skip


class FakeCoordination(Coordination):
    """One host of a ``FakeCluster``."""

    shared = True

    def __init__(self, cluster: FakeCluster, name: str, lease: float) -> None:
        self.cluster = cluster
        self.name = name
        self.lease = lease
        #: heartbeats fail (the network to the database is cut) while True
        self.heartbeat_fails = False

    def _enter(self, method: str, *args: Any) -> FakeCluster:
        c = self.cluster
        c.calls.append((self.name, method, *args))
        if c.down:
            raise StateError(f"fake://cluster: the database cannot be reached ({method})")
        return c

    def register(self) -> None:
        c = self._enter("register")
        with c.lock:
            c.hosts[self.name] = c.now

    def heartbeat(self) -> None:
        c = self._enter("heartbeat")
        if self.heartbeat_fails:
            raise StateError("fake://cluster: the heartbeat could not reach the database")
        with c.lock:
            c.hosts[self.name] = c.now
            until = c.now + self.lease
            for key, (holder, _) in list(c.claims.items()):
                if holder == self.name:
                    c.claims[key] = (holder, until)
            for key, (holder, _) in list(c.slots.items()):
                if holder == self.name:
                    c.slots[key] = (holder, until)

    def leave(self) -> None:
        c = self._enter("leave")
        with c.lock:
            for table in (c.claims, c.slots):
                for key in [k for k, (holder, _) in table.items() if holder == self.name]:
                    del table[key]
            c.hosts.pop(self.name, None)

    def claim(self, delivery_id: int, destination: str) -> Claim:
        c = self._enter("claim", delivery_id, destination)
        with c.lock:
            queued = c.refuse_claims.get(delivery_id)
            if queued:
                return queued.pop(0)
            if delivery_id in c.settled:
                return Claim(False, reason="delivered", settled=True)
            holder = c.holder(delivery_id)
            if holder is not None and holder != self.name:
                return Claim(False, holder=holder, reason=f"held by {holder}")
            if c.not_before.get(delivery_id, 0.0) > c.now:
                return Claim(False, wait=c.not_before[delivery_id] - c.now, reason="retry backoff")
            breaker = c.breakers.get(destination)
            probe = False
            if breaker is not None and breaker.paused_until > c.now:
                return Claim(False, wait=breaker.paused_until - c.now, reason="destination paused")
            if breaker is not None and breaker.trips:
                if breaker.probe is not None and breaker.probe != (self.name, delivery_id):
                    # as the PostgreSQL backend answers: the probing host, and a wait
                    prober = breaker.probe[0]
                    return Claim(False, holder=prober, wait=0.001, reason=f"destination being probed by {prober}")
                breaker.probe, probe = (self.name, delivery_id), True
            c.claims[delivery_id] = (self.name, c.now + self.lease)
            return Claim(True, probe=probe)

    def release(self, delivery_id: int, *, retry_in: float | None = None) -> None:
        c = self._enter("release", delivery_id, retry_in)
        with c.lock:
            if c.holder(delivery_id) == self.name:
                del c.claims[delivery_id]
            if retry_in:
                c.not_before[delivery_id] = c.now + retry_in

    def take_slot(self, destination: str, limit: int) -> int | None:
        c = self._enter("take_slot", destination, limit)
        with c.lock:
            for slot in range(limit):
                held = c.slots.get((destination, slot))
                if held is None or not c.live(held[1]):
                    c.slots[(destination, slot)] = (self.name, c.now + self.lease)
                    return slot
        if c.on_take_slot is not None:
            c.on_take_slot(self.name, destination)
        return None

    def drop_slot(self, destination: str, slot: int) -> None:
        c = self._enter("drop_slot", destination, slot)
        with c.lock:
            held = c.slots.get((destination, slot))
            if held is not None and held[0] == self.name:
                del c.slots[(destination, slot)]

    def destination_failed(
        self, destination: str, error: str, *, threshold: int, pause: float, max_pause: float, long: bool
    ) -> float:
        c = self._enter("destination_failed", destination, error, threshold, pause, max_pause, long)
        with c.lock:
            b = c.breakers.setdefault(destination, _Breaker())
            b.last_error = error
            b.failures += 1
            if not (long or b.trips or b.failures >= threshold):
                return 0.0
            b.trips += 1
            b.failures = 0
            b.probe = None
            seconds = max_pause if long else min(pause * 2 ** (b.trips - 1), max_pause)
            b.paused_until = c.now + seconds
            return seconds

    def destination_ok(self, destination: str) -> None:
        c = self._enter("destination_ok", destination)
        with c.lock:
            c.breakers.pop(destination, None)

    def paused(self) -> dict[str, tuple[float, str | None]]:
        c = self._enter("paused")
        with c.lock:
            return {d: (b.paused_until - c.now, b.last_error) for d, b in c.breakers.items() if b.paused_until > c.now}

    def hosts(self) -> list[HostRow]:
        return []

    def held(self) -> list[HeldDelivery]:
        return []


class FencedLedger(SQLiteLedger):
    """A SQLite ledger that behaves as a shared one for the exporter: its coordination is a host of
    a ``FakeCluster``; ``mark_files`` is fenced by the claim; ``succeed`` and ``fail`` clear it."""

    def __init__(self, path: Path, coordination: FakeCoordination) -> None:
        super().__init__(path)
        self._coordination = coordination
        #: delivery -> the host that takes it over at its first ``renaming`` (a lease lost mid-upload)
        self.steal_at_rename: dict[int, str] = {}
        self.closed_interrupted = 0

    @property
    def coordination(self) -> Coordination:
        return self._coordination

    def mark_files(self, delivery_id: int, states: Mapping[str, FileState]) -> None:
        c, me = self._coordination.cluster, self._coordination.name
        with c.lock:
            thief = self.steal_at_rename.pop(delivery_id, None)
            if thief is not None:
                c.claims[delivery_id] = (thief, c.now + self._coordination.lease)
            if c.holder(delivery_id) != me:
                holder = c.holder(delivery_id)
                raise ClaimLostError(f"delivery {delivery_id}: this host no longer holds it ({holder} does)")
        super().mark_files(delivery_id, states)

    def _let_go(self, delivery_id: int, *, settled: bool) -> None:
        c, me = self._coordination.cluster, self._coordination.name
        with c.lock:
            if c.holder(delivery_id) == me:
                del c.claims[delivery_id]
            if settled:
                c.settled.add(delivery_id)

    def succeed(self, delivery_id: int, attempt_id: int, remote_paths: list[str], sent: int) -> None:
        super().succeed(delivery_id, attempt_id, remote_paths, sent)
        self._let_go(delivery_id, settled=True)

    def fail(self, delivery_id: int, attempt_id: int, error: str, *, final: bool, sent: int = 0) -> None:
        super().fail(delivery_id, attempt_id, error, final=final, sent=sent)
        self._let_go(delivery_id, settled=final)

    def close_interrupted(self) -> int:
        self.closed_interrupted += 1
        return 0  # the model has no attempts of dead hosts to close

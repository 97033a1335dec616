"""The exporter's connections: one pool per destination, all of them within the ``jobs`` budget.

A destination's pool keeps connections open from record to record (``transport.pool``); this keeps
the sum over destinations in check: open connections are at most the running attempts plus the idle
ones, so before a destination opens a new connection, idle ones elsewhere are closed when the total
would exceed ``jobs``. Without that, a run over 400 destinations ends with 400 connections open.

On a shared ledger every connection also holds one of its destination's slots (``slots``), so that
the hosts together stay within ``max_connections``.

With a ledger, each connection works by what is known of its server (``capabilities``): learned on a
destination's first connection, kept up to date from what each connection meets, and a server that
refused one more session caps the destination's connections at what it accepted.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from .capabilities import CapabilityBook
from .dispatch import LaneState
from .ledger import Coordination, Ledger
from .plan import endpoint_for
from .rules import Route
from .secret import SecretSource
from .slots import Slots
from .transport import Endpoint, Transport, open_transport
from .transport.pool import ConnectionPool
from .transport.transcript import paused


class Connections:
    """The connection pools of an exporter, by destination (route key)."""

    def __init__(
        self,
        *,
        jobs: int,
        idle_timeout: float,
        lanes: Callable[[], dict[str, LaneState]],
        secrets: SecretSource | None = None,
        transport_factory: Callable[[Endpoint], Transport] | None = None,
        coordination: Coordination | None = None,
        ledger: Ledger | None = None,
        cap: Callable[[str, int], None] | None = None,
    ) -> None:
        self.jobs = jobs
        #: opens the connections, ``open_transport`` when None (see ``ConnectionPool``)
        self._transport_factory = transport_factory
        self.idle_timeout = idle_timeout
        self.secrets = secrets
        #: the dispatcher's lanes, to close the idle connections of destinations with nothing queued first
        self._lanes = lanes
        self._pools: dict[str, ConnectionPool] = {}
        self._lock = threading.Lock()
        #: attempts running now (each holds at most one connection)
        self._running = 0
        #: the connection slots of a shared ledger; None when this process holds its ledger alone
        self.slots = Slots(coordination) if coordination is not None and coordination.shared else None
        #: what is known of each destination's server; ``cap(destination, n)`` runs at most n attempts
        #: on it at once. None without a ledger (the connections then learn nothing)
        self.book = CapabilityBook(ledger, cap=cap) if ledger is not None else None

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """Count an attempt as running while inside (it may hold a connection)."""
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    def acquire(self, route: Route, source: str) -> tuple[ConnectionPool, Transport]:
        """A connected transport to the route's destination and the pool to release it to."""
        pool = self._pool(route, source)
        self._make_room(pool)
        transport = pool.acquire()
        if self.book is not None:
            try:
                self.book.connected(route.key, transport)
            except BaseException:
                pool.release(transport, reuse=False)
                raise
        return pool, transport

    def _pool(self, route: Route, source: str) -> ConnectionPool:
        endpoint = endpoint_for(route, source, self.secrets)
        with self._lock:
            pool = self._pools.get(route.key)
            if pool is not None and pool.endpoint == endpoint:
                return pool
            stale = pool
            book, key = self.book, route.key
            pool = ConnectionPool(
                endpoint, size=route.destination.max_connections, idle_timeout=self.idle_timeout,
                transport_factory=self._factory(route),
                on_sessions_refused=None if book is None else lambda n: book.sessions_refused(key, n),
                on_release=None if book is None else lambda transport: book.released(key, transport),
            )  # fmt: skip
            self._pools[route.key] = pool
        if stale is not None:
            stale.close()  # the rule file changed: new settings, new connections
        return pool

    def _factory(self, route: Route) -> Callable[[Endpoint], Transport] | None:
        """What a destination's pool opens its connections with: on a shared ledger, each holds a slot."""
        slots = self.slots
        if slots is None:
            return self._transport_factory
        make = self._transport_factory or open_transport
        key = route.key
        # the limit is read when a connection opens: a server that refused a session lowers it
        return lambda endpoint: slots.transport(make(endpoint), key, self.limit(route))

    def limit(self, route: Route) -> int:
        """Attempts to run at once on the route's destination: its ``max_connections``, or fewer when
        its server refused more sessions (learned, kept in the ledger)."""
        limit = route.destination.max_connections
        if self.book is None:
            return limit
        sessions = self.book.known(route.key).sessions
        return min(limit, sessions) if sessions else limit

    def reserve(self, route: Route, source: str) -> bool:
        """Before an attempt: an idle connection no other attempt counts on, else a connection slot
        for it (a shared ledger); False when every slot of the destination is held: the attempt waits."""
        if self.slots is None:
            return True
        idle = self._pool(route, source).idle_count()
        return self.slots.reserve(route.key, self.limit(route), idle)

    def unreserve(self) -> None:
        """After an attempt: give back the slot it reserved and did not use."""
        if self.slots is not None:
            self.slots.unreserve()

    def _make_room(self, pool: ConnectionPool) -> None:
        """Keep the open connections within ``jobs``: before ``pool`` opens one, close idle ones elsewhere.

        Open connections are at most the running attempts plus the idle ones; so when the idle
        connections of all destinations and the running attempts (this one included) exceed
        ``jobs``, the idle connections of destinations with nothing queued go first, oldest first.
        """
        if pool.idle_count():
            return  # it reuses one: nothing new is opened
        with self._lock:
            others = [(key, p) for key, p in self._pools.items() if p is not pool]
            running = self._running
        idle = sum(p.idle_count() for _, p in others)
        excess = idle + running - self.jobs
        if excess <= 0:
            return
        lanes = self._lanes()
        candidates = []
        for key, other in others:
            since = other.oldest_idle()
            if since is not None:
                lane = lanes.get(key)
                candidates.append((bool(lane and lane.queued), since, other))
        candidates.sort(key=lambda c: (c[0], c[1]))
        with paused():  # other destinations' sessions: not in this attempt's transcript
            for _, _, other in candidates:
                while excess > 0 and other.close_oldest_idle():
                    excess -= 1
                if excess <= 0:
                    return

    def _all(self) -> list[ConnectionPool]:
        with self._lock:
            return list(self._pools.values())

    def reap(self) -> None:
        """Close the connections idle for longer than ``idle_timeout``."""
        for pool in self._all():
            pool.reap()

    def close_idle(self) -> None:
        """Close every idle connection (a host whose slots may be taken over keeps none open)."""
        for pool in self._all():
            while pool.close_oldest_idle():
                pass

    def abort_active(self) -> None:
        """Cut the connections in use, so that blocked transfers fail now."""
        for pool in self._all():
            pool.abort_active()

    def close(self) -> None:
        """Close every idle connection and forget the pools; connections in use close when released."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

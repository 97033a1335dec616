"""The exporter's connections: one pool per destination, all of them within the ``jobs`` budget.

A destination's pool keeps connections open from record to record (``transport.pool``); this keeps
the sum over destinations in check: open connections are at most the running attempts plus the idle
ones, so before a destination opens a new connection, idle ones elsewhere are closed when the total
would exceed ``jobs``. Without that, a run over 400 destinations ends with 400 connections open.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from .dispatch import LaneState
from .plan import endpoint_for
from .rules import Route
from .secret import SecretSource
from .transport import Endpoint, Transport
from .transport.pool import ConnectionPool


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
        return pool, pool.acquire()

    def _pool(self, route: Route, source: str) -> ConnectionPool:
        endpoint = endpoint_for(route, source, self.secrets)
        with self._lock:
            pool = self._pools.get(route.key)
            if pool is not None and pool.endpoint == endpoint:
                return pool
            stale = pool
            pool = ConnectionPool(endpoint, size=route.destination.max_connections, idle_timeout=self.idle_timeout,
                                  transport_factory=self._transport_factory)  # fmt: skip
            self._pools[route.key] = pool
        if stale is not None:
            stale.close()  # the rule file changed: new settings, new connections
        return pool

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

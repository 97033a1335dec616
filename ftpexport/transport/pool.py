"""Open connections to one destination, kept between jobs and checked before they are reused."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..errors import TooManySessionsError
from . import open_transport
from .base import Endpoint, Transport

log = logging.getLogger(__name__)

#: A connection released less than this many seconds ago worked a moment ago: instead of the
#: liveness check that asks the server (SFTP realpath: one round trip per job, 50 ms on a WAN), it
#: only gets the check that costs none (``seems_alive``, for a transport that declares
#: ``capabilities.quick_liveness``: paramiko's reader thread notices a closed connection at once).
#: Should it die unnoticed, the job fails like any attempt on a dropped connection (a transient
#: error) and is retried on a new one. Transports without such a check (FTP: a connection the
#: server cut shows only when asked) keep the NOOP, so that a dropped idle connection is replaced
#: without a failed attempt.
RECENT_SECONDS = 2.0


class ConnectionPool:
    """Up to ``size`` idle connections to one endpoint; a dead one is replaced by a new connection.

    ``acquire`` hands out a connected transport, ``release`` takes it back (or closes it when the
    job failed: a connection in an unknown state is never reused). Idle connections are closed
    after ``idle_timeout`` seconds by ``reap``, before most servers drop them on their side.

    A reused transport forgets which directories exist (a DMS may remove a folder after ingesting
    it), unless it declares that it copes with that itself (``capabilities.keeps_directories``: SFTP
    and FTP create a cached folder again when the server removed it), which saves the folder checks
    of every job.

    A server that refuses one more session (``TooManySessionsError``: 421 too many connections) while
    this pool holds others open or connecting tells how many it accepts: ``on_sessions_refused(n)``
    is called with the number of this pool's connections it may have counted (``_counted``: open or
    connecting when the refusal came in), and the pool keeps no more idle than that.
    ``on_release(transport)`` is called with every transport given back, before it is kept or closed
    (what it learned of the server is read there).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        size: int,
        idle_timeout: float = 60.0,
        transport_factory: Callable[[Endpoint], Transport] | None = None,
        on_sessions_refused: Callable[[int], None] | None = None,
        on_release: Callable[[Transport], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        #: makes a new, not yet connected transport: ``open_transport`` unless given (tests give
        #: ``transport.memory.MemoryServer.transport``)
        self._open = transport_factory or open_transport
        self.size = size
        self.idle_timeout = idle_timeout
        self._on_sessions_refused = on_sessions_refused
        self._on_release = on_release
        self._lock = threading.Lock()
        self._idle: list[tuple[Transport, float]] = []
        self._active: set[Transport] = set()
        #: connections begun so far, to count those begun while one connects
        self._begun = 0
        self._closed = False
        #: connections opened and reused so far (for logs and tests)
        self.opened = 0
        self.reused = 0

    def acquire(self) -> Transport:
        """A connected transport: an idle one that still answers, else a new connection."""
        while True:
            with self._lock:
                if not self._idle:
                    break
                transport, since = self._idle.pop()
            if self._usable(transport, since):
                if not transport.capabilities.keeps_directories:
                    transport.forget_directories()
                with self._lock:
                    self._active.add(transport)
                    self.reused += 1
                return transport
            log.debug("the server dropped an idle connection; opening a new one",
                      extra={"destination": self.endpoint.display})  # fmt: skip
            transport.close()
        transport = self._open(self.endpoint)
        with self._lock:
            others = len(self._active) + len(self._idle)  # open, in use or still connecting
            self._active.add(transport)
            self._begun += 1
            begun = self._begun
        try:
            transport.connect()
        except BaseException as exc:
            with self._lock:
                self._active.discard(transport)
                counted = self._counted(others + self._begun - begun)
            transport.close()
            if isinstance(exc, TooManySessionsError) and counted > 0:
                exc.sessions_open = counted
                self._sessions_refused(counted)
            raise
        with self._lock:
            self.opened += 1
        return transport

    def _counted(self, met: int) -> int:
        """How many sessions of ours the server counted when it refused one (called with the refused
        one out of ``_active``): those open or still connecting now; of several refused together, the
        last sees only the sessions the server took. When none is left but ``met`` others connected
        beside the refused one, all of them were refused: a server that counts at login (ProFTPD's
        ``MaxClientsPerUser``) refuses every login of a crowd. A limit still, not a failure: 1."""
        others = len(self._active) + len(self._idle)
        return others if others or not met else 1

    def _sessions_refused(self, sessions: int) -> None:
        """The server refused one more session while it may have counted ``sessions`` of this pool's."""
        log.info("the server refused one more session; connections to it are capped",
                 extra={"destination": self.endpoint.display, "sessions": sessions})  # fmt: skip
        with self._lock:
            self.size = min(self.size, sessions)
        if self._on_sessions_refused is not None:
            self._on_sessions_refused(sessions)

    @staticmethod
    def _usable(transport: Transport, since: float) -> bool:
        """Whether an idle connection can take a job: asked to the server, unless released just now."""
        if transport.capabilities.quick_liveness and time.monotonic() - since < RECENT_SECONDS:
            return transport.seems_alive()
        return transport.alive()

    def release(self, transport: Transport, *, reuse: bool) -> None:
        """Give a transport back: kept for the next job if ``reuse`` and there is room, else closed."""
        if self._on_release is not None:
            self._on_release(transport)
        with self._lock:
            self._active.discard(transport)
            keep = reuse and not self._closed and len(self._idle) < self.size
            if keep:
                self._idle.append((transport, time.monotonic()))
        if not keep:
            transport.close()

    def idle_count(self) -> int:
        """Connections open and waiting for a job."""
        with self._lock:
            return len(self._idle)

    def oldest_idle(self) -> float | None:
        """Since when the longest-waiting idle connection waits (monotonic), or None."""
        with self._lock:
            return min((since for _, since in self._idle), default=None)

    def close_oldest_idle(self) -> bool:
        """Close the idle connection that waited longest, to make room elsewhere; False when none."""
        with self._lock:
            if not self._idle:
                return False
            oldest = min(range(len(self._idle)), key=lambda i: self._idle[i][1])
            transport, _ = self._idle.pop(oldest)
        transport.close()
        return True

    def reap(self) -> int:
        """Close the connections idle for longer than ``idle_timeout``; returns how many."""
        limit = time.monotonic() - self.idle_timeout
        with self._lock:
            old = [t for t, since in self._idle if since < limit]
            self._idle = [(t, since) for t, since in self._idle if since >= limit]
        for transport in old:
            transport.close()
        return len(old)

    def abort_active(self) -> None:
        """Cut the connections in use, so that blocked transfers fail now (shutdown after the grace time)."""
        with self._lock:
            active = list(self._active)
        for transport in active:
            transport.abort()

    def close(self) -> None:
        """Close the idle connections; connections in use are closed when released."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for transport, _ in idle:
            transport.close()

"""The heartbeat of a host on a shared ledger, and its self-fencing.

Whatever a host holds on a shared ledger (deliveries, connection slots) is a lease that its
heartbeat renews every ``lease / 3`` seconds (``Coordination.heartbeat``). A host whose heartbeat
has not succeeded for ``2/3`` of the lease must assume that its leases are about to run out and be
taken over: it cuts its running uploads and closes its idle connections (``on_lost``), and claims
nothing until a heartbeat succeeds again (``holding``). The crash journal fences the rest: a rename
of a delivery this host no longer holds is refused (``ClaimLostError``).

Time here is this host's monotonic clock, counted from the moment the last successful heartbeat
was sent, so it errs on the early side of the database's clock, which decides the leases.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .errors import FtpexportError
from .ledger import Coordination

log = logging.getLogger(__name__)


class Heartbeat:
    """Renews this host's leases on a shared ledger; see the module's docstring. ``start`` runs it
    on two threads (one beats, one watches the time, so that a heartbeat that hangs still fences);
    tests call ``beat`` and ``check`` with their own ``clock``."""

    def __init__(
        self,
        coordination: Coordination,
        on_lost: Callable[[], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.coordination = coordination
        self.on_lost = on_lost
        self.clock = clock
        #: seconds between heartbeats
        self.interval = coordination.lease / 3
        #: seconds without a successful heartbeat after which this host fences itself
        self.limit = coordination.lease * 2 / 3
        self._lock = threading.Lock()
        self._last_ok = clock()
        self._fenced = False
        self._failing = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- one step each (the threads call them)

    def beat(self) -> None:
        """Send one heartbeat; a failure is logged, and fences this host once it lasts too long."""
        sent = self.clock()
        try:
            self.coordination.heartbeat()
        except FtpexportError as exc:
            if not self._failing:
                log.warning("heartbeat to the shared ledger failed: %s", exc, extra={"host": self.coordination.name})
            self._failing = True
            self.check()
            return
        except Exception:  # a bug must not end the heartbeat
            log.exception("heartbeat to the shared ledger failed, please report it")
            self._failing = True
            self.check()
            return
        with self._lock:
            self._last_ok = max(self._last_ok, sent)
            fenced, self._fenced = self._fenced, False
        self._failing = False
        if fenced:
            log.warning("heartbeat to the shared ledger succeeded again; claiming work again",
                        extra={"host": self.coordination.name})  # fmt: skip

    def check(self) -> bool:
        """Fence this host when its last successful heartbeat is too old; True while it is not fenced."""
        with self._lock:
            if self._fenced:
                return False
            if self.clock() - self._last_ok < self.limit:
                return True
            self._fenced = True
            silent = self.clock() - self._last_ok
        log.error(
            "no heartbeat reached the shared ledger for %.1f s (lease %g s): cutting the running uploads and"
            " claiming nothing until it answers; other hosts may take these deliveries over",
            silent, self.coordination.lease, extra={"host": self.coordination.name},
        )  # fmt: skip
        try:
            self.on_lost()
        except Exception:
            log.exception("cutting the uploads of a fenced host failed, please report it")
        return False

    @property
    def holding(self) -> bool:
        """True while this host may claim work (its heartbeat is recent enough)."""
        return self.check()

    # --- the threads

    def start(self) -> Heartbeat:
        for target, name in ((self._beating, "ftpexport-heartbeat"), (self._watching, "ftpexport-fence")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _beating(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def _watching(self) -> None:
        while not self._stop.wait(max(self.interval / 4, 0.05)):
            self.check()

    def close(self) -> None:
        """Stop the threads (a heartbeat under way ends first, within the backend's own timeout)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.coordination.lease)
        self._threads = []

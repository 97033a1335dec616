"""How the processes that share one ledger divide the work: ``Coordination``, and ``Solo`` for a
ledger that one process holds alone (SQLite, behind its lock file).

On a shared ledger (PostgreSQL) every exporter process is a *host*, named ``hostname:pid:random``
(a restarted process never inherits what its predecessor held). Whatever a host holds is a lease
its heartbeat renews, and that any other host may take once it has not been renewed for ``lease``
seconds (the database's clock decides, never a host's):

- a **delivery** (``claim``): one host at a time attempts it. A claim is refused while another
  host's lease on it is alive, while its persisted backoff runs (``release(retry_in=...)``), while
  its destination is paused by the breaker (any host's failures count), or once it is delivered.
  The crash journal is fenced by the claim: ``mark_files`` (a ``renaming``) of a delivery this host no longer holds
  raises ``ClaimLostError``, so a host that lost its lease never renames a file another host is
  sending;
- a **connection slot** (``take_slot``): slot ``0 .. limit-1`` of a destination, held for as long
  as the connection is open, idle ones kept for reuse included, so the destination never sees more
  than ``max_connections`` sessions from all hosts together;
- the **probe** of a destination after its pause: one host's claim carries ``probe=True``; the
  others wait until it has answered (``destination_ok`` / ``destination_failed``).

Webhook notifications are claimed inside ``Ledger.due_notifications`` (one host sends each).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TypedDict


@dataclass(frozen=True)
class Claim:
    """What ``claim`` answered for one delivery."""

    #: this host holds the delivery now: attempt it, then ``release`` it
    ok: bool
    #: not ok: the host holding it (None when nobody does)
    holder: str | None = None
    #: not ok: seconds until it may be claimed again (a persisted backoff, a paused destination);
    #: 0 when it may be tried as soon as the holder lets go
    wait: float = 0.0
    #: not ok: why, in words for a log line ("held by host-b:4242:1f3a", "delivered", "destination paused")
    reason: str | None = None
    #: ok, and this attempt is the one probe of a destination whose pause ended
    probe: bool = False
    #: not ok and there is nothing left to do (delivered, failed, superseded): forget the job
    settled: bool = False


class HostRow(TypedDict):
    """One host of a shared ledger (``status``)."""

    name: str  # hostname:pid:random
    hostname: str
    pid: int
    started_at: str  # ISO 8601
    heartbeat_at: str  # ISO 8601, the database's clock
    alive: bool  # its heartbeat is younger than the lease
    deliveries: int  # deliveries it holds now
    connections: int  # connection slots it holds now


class HeldDelivery(TypedDict):
    """A delivery a host holds now (``status``)."""

    delivery_id: int
    holder: str
    client_id: str
    destination: str
    record_id: str
    since: str  # ISO 8601, when it was claimed
    lease_until: str  # ISO 8601


class Coordination(ABC):
    """The leases of one host on a shared ledger (see the module's docstring). Safe to call from
    several threads. A database that cannot be reached is a ``StateError`` (after the backend's own
    reconnection attempts)."""

    #: False for a ledger one process holds alone (``Solo``): no lease, no heartbeat, a lock file
    shared: bool = True
    #: this host's name
    name: str
    #: seconds a lease lasts without a heartbeat
    lease: float

    # --- the host

    @abstractmethod
    def register(self) -> None:
        """Announce this host (its row in ``hosts``) and start its heartbeat clock."""

    @abstractmethod
    def heartbeat(self) -> None:
        """Renew this host's heartbeat and every lease it holds; call it every ``lease / 3`` seconds."""

    @abstractmethod
    def leave(self) -> None:
        """Release everything this host holds (deliveries, slots, probes, notifications) and drop its row."""

    # --- deliveries

    @abstractmethod
    def claim(self, delivery_id: int, destination: str) -> Claim:
        """Take the delivery for this host, if it is pending, due, not held by a live lease and its
        destination not paused (see ``Claim``); a claim this host holds already is renewed."""

    @abstractmethod
    def release(self, delivery_id: int, *, retry_in: float | None = None) -> None:
        """Let go of a claimed delivery; ``retry_in``: no host may claim it for that many seconds (its
        backoff, persisted)."""

    # --- connections

    @abstractmethod
    def take_slot(self, destination: str, limit: int) -> int | None:
        """One of the ``limit`` connection slots of a destination for this host, or None when all are held."""

    @abstractmethod
    def drop_slot(self, destination: str, slot: int) -> None:
        """Give back a connection slot (the connection is closed)."""

    # --- the breaker, one per destination for every host

    @abstractmethod
    def destination_failed(
        self, destination: str, error: str, *, threshold: int, pause: float, max_pause: float, long: bool
    ) -> float:
        """Count a failure of the destination (any host's); returns the seconds it is paused for now,
        0 when it is not. ``threshold`` failures in a row pause it for ``pause`` seconds, doubled at
        each new pause up to ``max_pause``; ``long`` pauses it for ``max_pause`` at once; a failed
        probe pauses it again."""

    @abstractmethod
    def destination_ok(self, destination: str) -> None:
        """The destination answered: its failures and pauses are forgotten."""

    @abstractmethod
    def paused(self) -> dict[str, tuple[float, str | None]]:
        """``{destination: (seconds until it resumes, last error)}`` of the paused destinations."""

    # --- what status shows

    @abstractmethod
    def hosts(self) -> list[HostRow]:
        """Every host that has a row (alive or not), newest heartbeat first."""

    @abstractmethod
    def held(self) -> list[HeldDelivery]:
        """The deliveries held by a host now, oldest claim first."""


class Solo(Coordination):
    """A ledger one process holds alone (behind its lock file): every claim is granted, the
    dispatcher's own lanes cap the connections and run the breaker, and there is nobody to tell."""

    shared = False

    def __init__(self, name: str = "local") -> None:
        self.name = name
        self.lease = float("inf")

    def register(self) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def leave(self) -> None:
        pass

    def claim(self, delivery_id: int, destination: str) -> Claim:
        return Claim(True)

    def release(self, delivery_id: int, *, retry_in: float | None = None) -> None:
        pass

    def take_slot(self, destination: str, limit: int) -> int | None:
        return 0

    def drop_slot(self, destination: str, slot: int) -> None:
        pass

    def destination_failed(
        self, destination: str, error: str, *, threshold: int, pause: float, max_pause: float, long: bool
    ) -> float:
        return 0.0

    def destination_ok(self, destination: str) -> None:
        pass

    def paused(self) -> dict[str, tuple[float, str | None]]:
        return {}

    def hosts(self) -> list[HostRow]:
        return []

    def held(self) -> list[HeldDelivery]:
        return []

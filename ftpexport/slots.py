"""Connection slots on a shared ledger: every open connection to a destination, idle ones kept for
reuse included, holds one of its ``max_connections`` slots (``Coordination.take_slot``), so that all
hosts together never open more sessions than the destination allows.

The slot belongs to the connection: ``SlottedTransport`` wraps the transport a pool opens, takes a
slot when it connects and gives it back when it is closed. An attempt that will need a new
connection reserves its slot before it starts (``Slots.reserve``), so that a destination whose
slots are all held elsewhere makes the attempt wait without counting a try; the connection it then
opens (on the same thread) takes the reserved slot.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from .errors import FtpexportError, StateError
from .ledger import Coordination
from .transport import Endpoint, Transport

log = logging.getLogger(__name__)

#: seconds a destination's lane waits when every connection slot is held by the hosts of the ledger
SLOT_WAIT = 1.0


class NoSlotError(FtpexportError):
    """Every connection slot of a destination is held by the hosts of the shared ledger."""

    def __init__(self, destination: str, limit: int) -> None:
        self.destination = destination
        super().__init__(
            f"{destination}: all {limit} connection slots (max_connections) are held by the hosts sharing"
            " the ledger; waiting for one to close",
            hint="nothing to do: the delivery is tried again as soon as a connection closes",
        )


class Slots:
    """The connection slots this host holds, and what the attempt of each thread counts on: an idle
    connection of the destination (``promised``: no two attempts count on the same one) or a slot
    reserved for the connection it will open."""

    def __init__(self, coordination: Coordination) -> None:
        self.coordination = coordination
        self._lock = threading.Lock()
        #: by destination: attempts counting on an idle connection now
        self._promised: Counter[str] = Counter()
        #: the attempt running on this thread: its slots (by destination) and idle connections counted on
        self._reserved = threading.local()

    def _mine(self) -> tuple[dict[str, int], list[str]]:
        if not hasattr(self._reserved, "slots"):
            self._reserved.slots, self._reserved.idle = {}, []
        return self._reserved.slots, self._reserved.idle

    def reserve(self, destination: str, limit: int, idle: int) -> bool:
        """Before an attempt: count on one of the ``idle`` connections of the destination not yet
        counted on by another attempt, else take a slot for the connection it is about to open;
        False when every slot is held (the attempt must wait)."""
        spare, counted = self._mine()
        if destination in spare or destination in counted:
            return True
        with self._lock:
            if idle > self._promised[destination]:
                self._promised[destination] += 1
                counted.append(destination)
                return True
        slot = self.coordination.take_slot(destination, limit)
        if slot is None:
            return False
        spare[destination] = slot
        return True

    def unreserve(self) -> None:
        """After an attempt: give back the slots this thread reserved and no connection took."""
        spare, counted = self._mine()
        with self._lock:
            while counted:
                self._promised[counted.pop()] -= 1
        while spare:
            destination, slot = spare.popitem()
            self.coordination.drop_slot(destination, slot)

    def take(self, destination: str, limit: int) -> int:
        """The slot of a connection about to open: the one reserved on this thread, else a new one."""
        slot = self._mine()[0].pop(destination, None)
        if slot is None:
            slot = self.coordination.take_slot(destination, limit)
        if slot is None:
            raise NoSlotError(destination, limit)
        return slot

    def transport(self, inner: Transport, destination: str, limit: int) -> Transport:
        """``inner`` holding a slot of ``destination`` while it is connected."""
        return SlottedTransport(inner, self, destination, limit)  # type: ignore[return-value]


class SlottedTransport:
    """A transport that holds a connection slot from ``connect`` to ``close`` (a proxy: everything
    else is the wrapped transport's)."""

    def __init__(self, inner: Transport, slots: Slots, destination: str, limit: int) -> None:
        self._inner = inner
        self._slots = slots
        self._destination = destination
        self._limit = limit
        self._slot: int | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return repr(self._inner)

    @property
    def endpoint(self) -> Endpoint:
        return self._inner.endpoint

    def connect(self) -> None:
        slot = self._slots.take(self._destination, self._limit)
        with self._lock:
            self._slot = slot
        self._inner.connect()  # on failure the pool closes us, which gives the slot back

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            with self._lock:
                slot, self._slot = self._slot, None
            if slot is not None:
                try:
                    self._slots.coordination.drop_slot(self._destination, slot)
                except StateError as exc:  # close never raises: the slot's lease runs out instead
                    log.warning("a connection slot could not be given back: %s", exc,
                                extra={"destination": self._destination})  # fmt: skip

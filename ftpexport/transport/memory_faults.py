"""The faults a ``MemoryServer`` can be scripted with (``transport.memory``): what happens to which
operations, the ``Hang`` that holds a call until the test releases it, and ``FaultScript``, the
server's methods that script them."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Op = Literal["login", "makedirs", "size", "put", "rename", "renamed", "remove"]
Action = Literal["refuse", "cut", "hang", "call"]


class Hang:
    """A call held by a ``hang`` fault: ``reached`` is set when one blocks; ``release()`` lets it go on."""

    def __init__(self, condition: threading.Condition) -> None:
        self._condition = condition
        self.reached = threading.Event()
        self.released = False

    def release(self) -> None:
        """Let the held call (and any later one this fault holds) go on."""
        with self._condition:
            self.released = True
            self._condition.notify_all()


@dataclass
class Fault:
    """One scripted fault: what happens to the operations ``op`` on paths matching ``pattern``."""

    op: Op
    pattern: str
    action: Action
    permanent: bool = False
    after: int = 0
    times: int | None = 1
    message: str | None = None
    hang: Hang | None = None
    call: Callable[[], None] | None = None
    fired: int = 0

    def matches(self, op: str, path: str) -> bool:
        spent = self.times is not None and self.fired >= self.times
        return not spent and op == self.op and fnmatch.fnmatchcase(path, self.pattern)


class FaultScript:
    """A ``MemoryServer``'s faults: scripted by a test, taken by its transports (see ``transport.memory``)."""

    faults: list[Fault]
    _lock: threading.RLock
    _condition: threading.Condition

    def refuse(self, op: Op, pattern: str = "*", *, permanent: bool = False, times: int | None = 1,
               message: str | None = None) -> Fault:  # fmt: skip
        """The server answers ``op`` with an error (the connection stays usable)."""
        return self._add(Fault(op, pattern, "refuse", permanent=permanent, times=times, message=message))

    def cut(self, op: Op, pattern: str = "*", *, after: int = 0, times: int | None = 1) -> Fault:
        """The connection drops during ``op`` (for ``put``: after ``after`` bytes reached the server)."""
        return self._add(Fault(op, pattern, "cut", after=after, times=times))

    def die_after_rename(self, pattern: str = "*", *, times: int | None = 1) -> Fault:
        """The rename takes effect, then the connection drops before the client hears so."""
        return self.cut("renamed", pattern, times=times)

    def hang(self, op: Op, pattern: str = "*", *, after: int = 0, times: int | None = 1) -> Hang:
        """``op`` blocks until released, aborted or timed out; the ``Hang`` tells when it is reached."""
        hang = Hang(self._condition)
        self._add(Fault(op, pattern, "hang", after=after, times=times, hang=hang))
        return hang

    def at(self, op: Op, pattern: str, call: Callable[[], None], *, after: int = 0, times: int | None = 1) -> Fault:
        """Run ``call()`` when ``op`` reaches this point (under the server's lock), then go on."""
        return self._add(Fault(op, pattern, "call", after=after, times=times, call=call))

    def clear_faults(self) -> None:
        """Forget the faults not spent yet: the server behaves from now on."""
        with self._lock:
            self.faults.clear()

    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take(self, op: str, path: str, *, put_bytes: int | None = None) -> Fault | None:
        """The first fault for ``op`` on ``path`` (for ``put``: due at ``put_bytes``), now fired; every
        ``at`` call due there runs first (they watch, they do not take the operation's place)."""
        with self._lock:
            due = [f for f in self.faults if (put_bytes is None or f.after == put_bytes) and f.matches(op, path)]
            for fault in due:
                if fault.action == "call":
                    fault.fired += 1
                    fault.call()  # type: ignore[misc]
            for fault in due:
                if fault.action != "call":
                    fault.fired += 1
                    return fault
        return None

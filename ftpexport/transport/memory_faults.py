"""The faults a ``MemoryServer`` can be scripted with (``transport.memory``): what happens to which
operations, and the ``Hang`` that holds a call until the test releases it."""

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

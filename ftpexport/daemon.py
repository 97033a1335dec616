"""The long-running side of an export: stopping on SIGTERM/SIGINT, recovering what a killed process
left (its open attempts, its spool), and assembling ``watch``."""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ledger import Ledger
from .lock import exclusive

if TYPE_CHECKING:
    from .pipeline import Exporter


class Stopper:
    """SIGTERM/SIGINT: the first stops new work and gives running uploads ``grace`` seconds, a second cuts them."""

    def __init__(self, exporter: Exporter, grace: float, log: logging.Logger) -> None:
        self.exporter = exporter
        self.grace = grace
        self.log = log
        self.event = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Stopper:
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self.join()

    def _handle(self, signum: int, _frame: object) -> None:
        grace = 0.0 if self.event.is_set() else self.grace
        self.log.warning(
            f"stopping: no new uploads; running ones get {grace:g} s, then stay pending",
            extra={"signal": signal.Signals(signum).name},
        )
        self.event.set()
        # not in the handler itself: stopping waits, and the handler runs in the main thread
        thread = threading.Thread(target=self.exporter.stop, args=(grace,), name="ftpexport-stop", daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()


def spool_dir(state: Path) -> Path:
    """Where a ledger's exports build their archives; only the lock holder uses it."""
    return state.with_name(state.name + ".spool")


@contextmanager
def exclusive_ledger(state: Path) -> Iterator[Ledger]:
    """The ledger, for this process alone; attempts a killed process left open are closed."""
    with exclusive(state), Ledger(state) as ledger:
        # archives a killed process was building or sending: nobody else can be using them
        shutil.rmtree(spool_dir(state), ignore_errors=True)
        interrupted = ledger.close_interrupted()
        if interrupted:
            logging.getLogger("ftpexport").warning(
                "the last run was interrupted; its deliveries are resumed", extra={"attempts": interrupted}
            )
        yield ledger

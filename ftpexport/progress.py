"""What ``ftpexport run`` shows while it works: a live display on a terminal, plain lines elsewhere.

On a terminal (as rclone's ``--progress``): records and bytes done out of the total, the rate, and
the destinations that are busy, waiting or failing, redrawn four times a second; each failure is
printed above the display when it happens. Elsewhere (a pipe, a log file, cron): one plain line
per delivery, nothing redrawn. Both are observers of the exporter (``events.Observer``). The live
display is in ``progress_live``: rich is imported only when there is a terminal to draw on.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from .dispatch import LaneState
from .display import human_bytes
from .events import Attempt, Observer, Outcome, Verdict
from .secret import redact

FAILED = ("failed", "deferred")


@dataclass
class _Destination:
    active: int = 0
    delivered: int = 0
    unchanged: int = 0
    failed: int = 0
    deferred: int = 0
    bytes: int = 0
    last_error: str | None = None


class Tally(Observer):
    """Counts what the exporter reports: records, deliveries and bytes, per destination. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        #: the exporter's lanes (queued, paused), once it exists
        self.lanes: Callable[[], dict[str, LaneState]] = dict
        self.lock = threading.Lock()
        self.started = clock()
        self.destinations: dict[str, _Destination] = defaultdict(_Destination)
        self.results: dict[str, int] = defaultdict(int)
        #: deliveries queued and not settled yet, per record
        self._open: dict[str, int] = defaultdict(int)
        self._records: set[str] = set()
        self._estimates: dict[tuple[str, str], int] = {}
        self._attempt_bytes: dict[str, int] = {}
        self.sent_total = 0  # every byte on the wire, retries included
        self.settled_bytes = 0  # bytes of the deliveries done
        self._samples: deque[tuple[float, int]] = deque([(self.started, 0)])

    def start(self) -> None:
        """Start showing (nothing to show for a bare tally)."""

    def close(self) -> None:
        """Stop showing."""

    # --- observer

    def queued(self, client_id: str, destination: str, record_id: str, estimated_bytes: int) -> None:
        with self.lock:
            self._records.add(record_id)
            self._open[record_id] += 1
            self._estimates[(record_id, destination)] = estimated_bytes
            self.destinations[destination]

    def attempt_started(self, attempt: Attempt) -> None:
        with self.lock:
            self.destinations[attempt.destination].active += 1
            self._attempt_bytes[attempt.correlation_id] = 0

    def sent(self, attempt: Attempt, n: int) -> None:
        with self.lock:
            self.sent_total += n
            self.destinations[attempt.destination].bytes += n
            self._attempt_bytes[attempt.correlation_id] = self._attempt_bytes.get(attempt.correlation_id, 0) + n

    def attempt_ended(self, attempt: Attempt, verdict: Verdict, seconds: float, sent: int) -> None:
        with self.lock:
            self.destinations[attempt.destination].active -= 1
            self._attempt_bytes.pop(attempt.correlation_id, None)

    def outcome(self, outcome: Outcome) -> None:
        with self.lock:
            self.results[outcome.result] += 1
            entry = self.destinations[outcome.destination]
            if outcome.result in ("delivered", "skipped"):
                entry.delivered += 1
            elif outcome.result in ("unchanged", "parked"):
                entry.unchanged += outcome.result == "unchanged"
                entry.failed += outcome.result == "parked"
            else:
                entry.failed += outcome.result == "failed"
                entry.deferred += outcome.result == "deferred"
                if outcome.result == "failed":  # a deferral says why it waits; the lane knows the failure
                    entry.last_error = outcome.error
            self._records.add(outcome.record_id)
            estimate = self._estimates.pop((outcome.record_id, outcome.destination), None)
            if estimate is not None:
                self._open[outcome.record_id] -= 1
                if self._open[outcome.record_id] <= 0:
                    del self._open[outcome.record_id]
            if outcome.result == "delivered":
                self.settled_bytes += outcome.bytes

    # --- reading

    def deliveries(self) -> tuple[int, int]:
        """(deliveries settled, deliveries seen): queued ones and those the ledger settled already."""
        with self.lock:
            settled = sum(self.results.values())
            return settled, settled + len(self._estimates)

    def records(self) -> tuple[int, int]:
        """(records done, records seen)."""
        with self.lock:
            return len(self._records) - len(self._open), len(self._records)

    def byte_totals(self) -> tuple[int, int]:
        """(bytes of this run done, bytes of this run in all): a delivery that failed counts for neither,
        one still queued counts with its estimate (its images' size) until it is done."""
        with self.lock:
            in_flight = sum(self._attempt_bytes.values())
            waiting = sum(self._estimates.values())
            return self.settled_bytes + in_flight, self.settled_bytes + max(waiting, in_flight)

    def rate(self, window: float = 5.0) -> float:
        """Bytes per second over the last ``window`` seconds."""
        now = self.clock()
        with self.lock:
            self._samples.append((now, self.sent_total))
            while len(self._samples) > 2 and now - self._samples[1][0] >= window:
                self._samples.popleft()
            first_time, first_bytes = self._samples[0]
            return (self.sent_total - first_bytes) / max(now - first_time, 1e-3)


class PlainProgress(Tally):
    """Not a terminal: one line per delivery (failures included), nothing redrawn."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def close(self) -> None:
        self.stream.flush()

    def outcome(self, outcome: Outcome) -> None:
        super().outcome(outcome)
        if outcome.result == "unchanged":
            return
        if outcome.result in (*FAILED, "parked"):
            line = f"{outcome.result.upper():<9} {outcome.destination}  {outcome.record_id}: {outcome.error}"
        else:
            size = f"  {human_bytes(outcome.bytes)}" if outcome.bytes else ""
            line = (
                f"{outcome.result:<9} {outcome.destination}  {outcome.record_id} -> {', '.join(outcome.remote_paths)}"
            )
            line += size
        with self.lock:
            self.stream.write(redact(line) + "\n")
            self.stream.flush()


def progress_for(stream: TextIO, *, quiet: bool, lanes: Callable[[], dict[str, LaneState]] | None = None) -> Tally:
    """The live display on a terminal, plain lines elsewhere, nothing when quiet."""
    if quiet:
        return Tally()
    if stream.isatty():
        from .progress_live import LiveProgress  # rich, only for a terminal

        return LiveProgress(stream, lanes)
    return PlainProgress(stream)

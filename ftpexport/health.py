"""Is the daemon alive? The watcher loop's heartbeat and the progress of every running attempt.

``ftpexport watch --metrics-port`` answers ``/healthz`` from a ``Health``: unhealthy when the
watcher loop has not ticked for ``watcher_stale`` seconds (it ticks every ~5 s), or when an attempt
has run for ``stale`` seconds without putting a byte on the wire. A destination that refuses
connections is not a health problem (its attempts end, the breaker pauses it, a restart would not
help); a worker blocked on a socket that never answers, or a watcher loop that hangs, is.

``Health`` is an observer of the exporter: its hooks run in worker threads, take a lock for a dict
update and return.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .events import Attempt, Observer, Verdict


@dataclass
class _Running:
    started: float
    progress: float
    bytes: int = 0


@dataclass(frozen=True)
class Stalled:
    """A running attempt that made no progress for too long."""

    attempt: Attempt
    #: seconds since the attempt started, or since its last byte went out
    idle: float
    running: float
    bytes: int


@dataclass(frozen=True)
class Report:
    """The answer of ``/healthz``."""

    ok: bool
    checks: dict[str, dict[str, Any]]

    @property
    def failing(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check["ok"]]

    def document(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unhealthy", "failing": self.failing, "checks": self.checks}


class Health(Observer):
    """Heartbeat of the watcher loop and progress of running attempts; ``report()`` judges them.

    ``clock`` is monotonic seconds (a fake one in tests). The watcher gets ``watcher_stale``
    seconds (default: ``stale``) from its last ``tick()``, and from creation before the first one.
    """

    def __init__(
        self,
        stale: float = 300.0,
        *,
        watcher_stale: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if stale <= 0:
            raise ValueError("stale must be > 0")
        self.stale = stale
        self.watcher_stale = stale if watcher_stale is None else watcher_stale
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._running: dict[Attempt, _Running] = {}
        self._tick = clock()
        #: wall-clock time of the last tick (None before the first): the ``..._timestamp_seconds`` metric
        self.last_tick_wall: float | None = None

    # --- the watcher loop

    def tick(self) -> None:
        """The watcher loop is alive (called from its housekeeping hook)."""
        with self._lock:
            self._tick = self._clock()
            self.last_tick_wall = self._wall()

    # --- observer hooks (worker threads)

    def attempt_started(self, attempt: Attempt) -> None:
        now = self._clock()
        with self._lock:
            self._running[attempt] = _Running(now, now)

    def sent(self, attempt: Attempt, n: int) -> None:
        now = self._clock()
        with self._lock:
            running = self._running.get(attempt)
            if running is not None:
                running.progress = now
                running.bytes += n

    def attempt_ended(self, attempt: Attempt, verdict: Verdict, seconds: float, sent: int) -> None:
        with self._lock:
            self._running.pop(attempt, None)

    # --- judging

    def stalled(self) -> list[Stalled]:
        """Running attempts without progress for ``stale`` seconds or more, the longest idle first."""
        now = self._clock()
        with self._lock:
            found = [
                Stalled(attempt, now - r.progress, now - r.started, r.bytes)
                for attempt, r in self._running.items()
                if now - r.progress >= self.stale
            ]
        return sorted(found, key=lambda s: -s.idle)

    def since_tick(self) -> float:
        """Seconds since the watcher loop last ticked (or since this tracker was created)."""
        with self._lock:
            return self._clock() - self._tick

    def report(self) -> Report:
        since = self.since_tick()
        watcher_ok = since < self.watcher_stale
        stalled = self.stalled()
        with self._lock:
            running = len(self._running)
        checks: dict[str, dict[str, Any]] = {
            "watcher": {
                "ok": watcher_ok,
                "seconds_since_tick": round(since, 3),
                "stale_after": self.watcher_stale,
                **({} if watcher_ok else {"error": f"the watcher loop has not ticked for {since:.0f} s"}),
            },
            "workers": {
                "ok": not stalled,
                "running_attempts": running,
                "stale_after": self.stale,
                "stalled": [
                    {
                        "destination": s.attempt.destination,
                        "client": s.attempt.client_id,
                        "record_id": s.attempt.record_id,
                        "correlation_id": s.attempt.correlation_id,
                        "seconds_without_progress": round(s.idle, 3),
                        "seconds_running": round(s.running, 3),
                        "bytes": s.bytes,
                    }
                    for s in stalled
                ],
                **(
                    {}
                    if not stalled
                    else {
                        "error": f"{len(stalled)} attempt(s) without progress for {self.stale:g} s or more: "
                        + ", ".join(sorted({s.attempt.destination for s in stalled}))
                    }
                ),
            },
        }
        return Report(watcher_ok and not stalled, checks)

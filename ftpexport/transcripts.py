"""What is kept of the attempts' protocol transcripts (``transport.transcript``), and for how long.

Every failed attempt keeps its transcript; of the delivered ones, the last ``KEEP_DELIVERED`` per
destination (the ledger drops the older ones as a new one is kept). Transcripts older than
``KEEP_DAYS`` days are purged by ``run`` when it starts and by ``watch`` once an hour
(``Purge``). A transcript that cannot be written (a full disk) is logged and the attempt goes on:
it is a diagnosis, not the delivery's record.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .errors import StateError
from .secret import redact

if TYPE_CHECKING:
    from .ledger import Ledger
    from .transport.transcript import Recorder

log = logging.getLogger(__name__)

#: delivered attempts whose transcript is kept, per destination (the newest)
KEEP_DELIVERED = 5
#: days a transcript is kept
KEEP_DAYS = 30
#: seconds between two purges of a long-running process
PURGE_EVERY = 3600.0


def keep(ledger: Ledger, recorder: Recorder, *, attempt_id: int, delivery_id: int, destination: str, ok: bool) -> None:
    """Save ``recorder``'s transcript for the attempt; never raises for the ledger."""
    try:
        ledger.save_transcript(attempt_id, delivery_id, destination, recorder.entries(redact), ok=ok,
                               keep_ok=KEEP_DELIVERED)  # fmt: skip
    except StateError as exc:
        log.warning("the attempt's transcript was not kept: %s", exc,
                    extra={"destination": destination, "attempt_id": attempt_id})  # fmt: skip


class Purge:
    """Drops the transcripts older than ``days``, at most once every ``every`` seconds."""

    def __init__(self, ledger: Ledger, *, days: float = KEEP_DAYS, every: float = PURGE_EVERY) -> None:
        self.ledger = ledger
        self.days = days
        self.every = every
        self._next = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        """Purge if it is time; how many transcripts were dropped (0 when it was not time)."""
        with self._lock:
            moment = time.monotonic()
            if moment < self._next:
                return 0
            self._next = moment + self.every
        before = (datetime.now(UTC) - timedelta(days=self.days)).isoformat()
        try:
            dropped = self.ledger.purge_transcripts(before)
        except StateError as exc:
            log.warning("old transcripts were not purged: %s", exc)
            return 0
        if dropped:
            log.info("purged %d transcripts older than %s days", dropped, self.days, extra={"before": before})
        return dropped

"""When to try again: the jittered backoff between tries (of a job, of a webhook) and the
dispatcher's backoff and breaker settings (``Policy``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    """Backoff and breaker settings."""

    #: first retry delay in seconds, doubled at each try up to ``max_backoff``, with jitter (``backoff_delay``)
    backoff: float = 1.0
    max_backoff: float = 300.0
    #: consecutive destination failures that open the breaker
    breaker_threshold: int = 3
    breaker_pause: float = 30.0
    max_pause: float = 600.0

    def delay(self, tries: int) -> float:
        """The wait before try ``tries + 1``."""
        return backoff_delay(tries, self.backoff, self.max_backoff)


def backoff_delay(tries: int, first: float, cap: float) -> float:
    """Seconds to wait before try ``tries + 1`` (of a job, of a webhook): ``first`` doubled at each
    try up to ``cap``, then jittered to between half of it and all of it, never above ``cap``, so
    failures that came together do not come back together."""
    delay = min(cap, first * 2 ** min(tries - 1, 62))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not cryptography

"""The counting behind the progress display: records and bytes done out of the total, the rate."""

from __future__ import annotations

from ftpexport.display import duration
from ftpexport.events import Attempt, Outcome
from ftpexport.progress import Tally


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _attempt(record: str, destination: str) -> Attempt:
    return Attempt(f"{record}-{destination}", "acme", destination, record)


def test_records_are_done_when_every_destination_is_settled() -> None:
    tally = Tally()
    tally.queued("acme", "acme/a", "r1", 1000)
    tally.queued("acme", "acme/b", "r1", 1000)
    tally.outcome(Outcome("r2", "/in/r2", "acme", "acme/a", "unchanged"))  # nothing to send for r2
    assert tally.records() == (1, 2)

    tally.outcome(Outcome("r1", "/in/r1", "acme", "acme/a", "delivered", bytes=1100))
    assert tally.records() == (1, 2)
    tally.outcome(Outcome("r1", "/in/r1", "acme", "acme/b", "failed", error="550 denied"))
    assert tally.records() == (2, 2)
    assert tally.destinations["acme/b"].last_error == "550 denied"


def test_bytes_done_and_total_follow_attempts_and_forget_a_failed_delivery() -> None:
    tally = Tally()
    tally.queued("acme", "acme/a", "r1", 1000)
    tally.queued("acme", "acme/b", "r1", 1000)
    assert tally.byte_totals() == (0, 2000)

    a, b = _attempt("r1", "acme/a"), _attempt("r1", "acme/b")
    tally.attempt_started(a)
    tally.sent(a, 400)
    assert tally.byte_totals() == (400, 2000)
    tally.attempt_ended(a, "retry", 1.0, 400)  # a retry starts over: its bytes are not done
    assert tally.byte_totals() == (0, 2000)
    tally.attempt_started(a)
    tally.sent(a, 1050)
    tally.attempt_ended(a, "done", 1.0, 1050)
    tally.outcome(Outcome("r1", "/in/r1", "acme", "acme/a", "delivered", bytes=1050))
    assert tally.byte_totals() == (1050, 2050)  # the estimate is replaced by what was sent

    tally.attempt_started(b)
    tally.sent(b, 10)
    tally.attempt_ended(b, "failed", 1.0, 10)
    tally.outcome(Outcome("r1", "/in/r1", "acme", "acme/b", "failed"))
    assert tally.byte_totals() == (1050, 1050)  # 100 %: nothing more will be sent
    assert tally.sent_total == 1460  # what went on the wire, retries included
    assert tally.destinations["acme/a"].active == tally.destinations["acme/b"].active == 0


def test_the_rate_is_measured_over_the_last_seconds() -> None:
    clock = Clock()
    tally = Tally(clock)
    a = _attempt("r1", "acme/a")
    tally.attempt_started(a)
    clock.now += 1
    tally.sent(a, 1_000_000)
    assert tally.rate() == 1_000_000
    clock.now += 10  # idle for 10 s: the rate falls towards 0
    assert tally.rate() < 200_000


def test_durations_read_like_a_clock() -> None:
    assert [duration(s) for s in (0, 59.4, 75, 3600 + 120)] == ["0s", "59s", "1m15s", "1h02m"]


def test_deliveries_count_the_settled_out_of_all_and_a_deferral_is_not_a_failure() -> None:
    tally = Tally()
    tally.outcome(Outcome("r0", "/in/r0", "acme", "acme/a", "unchanged"))
    tally.queued("acme", "acme/a", "r1", 10)
    tally.queued("acme", "acme/b", "r1", 10)
    assert tally.deliveries() == (1, 3)
    tally.outcome(Outcome("r1", "/in/r1", "acme", "acme/b", "deferred", error="not tried again: paused"))
    assert tally.deliveries() == (2, 3)
    entry = tally.destinations["acme/b"]
    assert (entry.failed, entry.deferred, entry.last_error) == (0, 1, None)

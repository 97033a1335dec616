"""events.py: an observer that fails never fails a delivery; our own errors are one line, bugs a report."""

from __future__ import annotations

import logging

from ftpexport.errors import StateError
from ftpexport.events import Observer, Observers, Outcome


class Failing(Observer):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def outcome(self, outcome: Outcome) -> None:
        raise self.error


class Seen(Observer):
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_observer_meeting_a_full_disk_is_one_error_line_and_the_others_go_on() -> None:
    seen = Seen()
    full = StateError("/state/ledger.sqlite3: cannot write the ledger: database or disk is full", hint="free space")
    outcome = Outcome("veh-1", "/inbox/veh-1", "acme", "acme/dms", "delivered")
    logger, handler = logging.getLogger("ftpexport.events"), Records()
    logger.addHandler(handler)
    try:
        Observers([Failing(full), Failing(ValueError("a bug")), seen]).outcome(outcome)
    finally:
        logger.removeHandler(handler)

    assert seen.outcomes == [outcome]
    [ours, bug] = handler.records
    assert ours.levelno == logging.ERROR and ours.exc_info is None
    assert ours.getMessage() == f"Failing: {full}"
    assert bug.getMessage() == "an observer failed, please report it" and bug.exc_info is not None

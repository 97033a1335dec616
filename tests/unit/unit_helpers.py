"""Shared by the unit tests: paths of the examples and valid vehicle.json documents."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
RULES = ROOT / "rules"

VIN = "WVWZZZ1JZXW000001"


def vehicle(**overrides: Any) -> dict[str, Any]:
    """A valid vehicle.json document; ``overrides`` replace or add top-level fields."""
    document: dict[str, Any] = {
        "id": "veh-1",
        "event": "vehicle.processed",
        "client_id": "acme-motors",
        "user": {"id": "u-1", "name": "Jeanne Dupont", "email": "jeanne@acme.example"},
        "vin": VIN,
        "stock_number": "A1234",
        "make": "Volkswagen",
        "model": "Golf",
        "year": 2021,
        "processed_at": "2026-11-20T14:03:00+01:00",
        "images": ["01.jpg", "02.jpg"],
        "extra": {"dealer_code": "ACM01"},
    }
    document.update(overrides)
    return document


MakeRecord = Callable[..., Path]


#: how long a call may block on a FIFO before the test unblocks it and fails (a hang guard, not a timing check)
HANG_GUARD = 30.0


def without_hanging(fifo: Path, call: Callable[[], Any]) -> Any:
    """``call()``, which must not block reading the FIFO ``fifo``.

    If it still runs after ``HANG_GUARD`` seconds, a writer is opened and closed on the FIFO (the
    blocked reader then sees the end of the file and returns) and the test fails.
    """
    outcome: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the test's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="without-hanging", daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    if thread.is_alive():
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join()
        pytest.fail(f"blocked reading the FIFO {fifo}")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value

"""A guard for the tests of code that must not block reading a FIFO (a named pipe posing as a file)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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

"""Waiting for something to happen without sleeping for it: ``eventually`` polls a condition until a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

#: the longest any test waits for something to happen
DEADLINE = 30.0


def eventually(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)

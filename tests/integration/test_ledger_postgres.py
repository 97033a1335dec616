"""The ledger's test suite (tests/unit/test_ledger.py) run against PostgreSQL: the same tests, the
``ledger`` fixture opening a new database of a real PostgreSQL (``pg_url``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))  # where test_ledger and its helpers are
from test_ledger import *  # noqa: F403 - every test of the interface, collected here again

from ftpexport.ledger import Ledger, open_ledger
from ftpexport.ledger.postgres import PostgresLedger


@pytest.fixture
def ledger(pg_url: str) -> Iterator[Ledger]:
    with open_ledger(pg_url) as opened:
        yield opened


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_ledger_opens_postgresql_for_both_schemes(pg_url: str, scheme: str) -> None:
    url = pg_url.replace("postgresql://", f"{scheme}://")
    with open_ledger(url) as ledger:
        assert isinstance(ledger, PostgresLedger)
        assert ledger.coordination.shared and ledger.location == url

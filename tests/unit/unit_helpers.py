"""Shared by the unit tests: paths of the examples and valid vehicle.json documents."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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

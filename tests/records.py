"""Records for the tests: ``vehicle()`` is a valid vehicle.json document, ``write_record`` writes a
record folder (images first, vehicle.json last, as the platform does), ``make_record`` a copy of a
sample record with its own id, VIN and client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paths import SAMPLES

VIN = "WVWZZZ1JZXW000001"

#: the unit tests' ``make_record`` fixture: ``make_record(name, fields=, images=, raw=, write_json=)``
MakeRecord = Callable[..., Path]


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


def vin(n: int) -> str:
    """A valid VIN (17 characters, no I, O or Q) that differs for every ``n``."""
    return f"WVWZZZAUZLW{n:06d}"


def write_record(folder: Path, images: dict[str, bytes], document: dict[str, Any] | bytes | None) -> Path:
    """Create ``folder`` with ``images`` (name -> bytes), then its vehicle.json: ``document`` as JSON,
    or these raw bytes; None leaves vehicle.json out (a record still being written)."""
    folder.mkdir(parents=True)
    for name, content in images.items():
        (folder / name).write_bytes(content)
    if document is not None:
        raw = document if isinstance(document, bytes) else json.dumps(document).encode()
        (folder / "vehicle.json").write_bytes(raw)
    return folder


def make_record(
    parent: Path,
    number: int,
    client_id: str | None = None,
    *,
    name: str | None = None,
    sample: str = "veh-000124",
    image_sizes: dict[str, int] | None = None,
) -> Path:
    """A copy of ``samples/<sample>`` as record ``name`` (``veh-<number>`` by default, also its id)
    with VIN ``vin(number)`` and, when given, ``client_id``.

    ``image_sizes`` replaces images by (or adds images of) that many random bytes, e.g.
    ``{"99.jpg": 600_000}`` for a large, incompressible package.
    """
    source = SAMPLES / sample
    name = name or f"veh-{number:06d}"
    images = {p.name: p.read_bytes() for p in sorted(source.iterdir()) if p.name != "vehicle.json"}
    images |= {image: os.urandom(size) for image, size in (image_sizes or {}).items()}
    document = json.loads((source / "vehicle.json").read_text())
    document.update(id=name, vin=vin(number))
    if client_id is not None:
        document["client_id"] = client_id
    return write_record(parent / name, images, document)

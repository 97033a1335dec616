"""Fixtures of the unit tests: record folders built in ``tmp_path``, an empty set of known secrets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from records import MakeRecord, vehicle, write_record

from ftpexport import secret


@pytest.fixture
def make_record(tmp_path: Path) -> MakeRecord:
    """``make_record(name, fields=..., images={name: bytes}, raw=bytes)`` -> a record folder.

    ``fields`` defaults to ``vehicle()``, ``images`` to two small JPEGs; ``raw`` replaces
    vehicle.json's bytes; ``write_json=False`` leaves vehicle.json out (an incomplete record).
    """

    def make(
        name: str = "rec",
        *,
        fields: dict[str, Any] | None = None,
        images: dict[str, bytes] | None = None,
        raw: bytes | None = None,
        write_json: bool = True,
    ) -> Path:
        if images is None:
            images = {"01.jpg": b"\xff\xd8first image\xff\xd9", "02.jpg": b"\xff\xd8second image\xff\xd9"}
        document = (raw if raw is not None else fields if fields is not None else vehicle()) if write_json else None
        return write_record(tmp_path / name, images, document)

    return make


@pytest.fixture
def known_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """An empty set of remembered secrets for one test (``secret.redact`` reads it)."""
    known: set[str] = set()
    monkeypatch.setattr(secret, "_known", known)
    yield known

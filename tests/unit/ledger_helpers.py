"""Shared by the ledger's tests: a delivery opened in one call, a time checked for its UTC offset."""

from __future__ import annotations

from datetime import datetime

from ftpexport.ledger import Delivery, Ledger


def open_delivery(
    ledger: Ledger, record_id: str = "veh-1", content_hash: str = "h1", destination: str = "acme/dms"
) -> Delivery:
    """Open (or find) the delivery of ``record_id`` at ``content_hash`` to ``destination`` (client: its first part)."""
    return ledger.open_delivery(
        record_id=record_id,
        content_hash=content_hash,
        client_id=destination.split("/")[0],
        destination=destination,
        record_path=f"/inbox/{record_id}",
    )


def aware(stamp: str | None) -> datetime:
    """``stamp`` parsed; fails the test when it is missing or has no UTC offset."""
    assert stamp is not None
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() is not None, f"{stamp} has no UTC offset"
    return parsed

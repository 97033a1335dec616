"""The document a webhook carries: the event of a delivered or finally failed vehicle, with what the
ledger says of its delivery, and the exact bytes stored, signed and sent."""

from __future__ import annotations

import json
from typing import Any

from ..events import Outcome
from ..ledger import Ledger, now
from ..secret import redact

#: the outcome results that make a notification, and the event each one is
EVENTS = {"delivered": "vehicle.delivered", "failed": "vehicle.failed"}


def payload(outcome: Outcome, ledger: Ledger | None = None) -> dict[str, Any]:
    """The JSON document of an outcome: ``{"type", "timestamp", "data": {...}}``.

    The delivery's ledger row, when there is one, gives the remote paths, bytes, correlation id and
    time: the webhook says exactly what the ledger says.
    """
    event = EVENTS[outcome.result]
    remote_paths, size = list(outcome.remote_paths), outcome.bytes
    correlation_id, attempts, error = outcome.correlation_id, outcome.attempts, outcome.error
    at = outcome.finished_at or now()
    if ledger is not None and outcome.delivery_id is not None:
        row = ledger.get(outcome.delivery_id)
        remote_paths, size, correlation_id = list(row.remote_paths), row.bytes, row.correlation_id
        attempts, error = row.attempts, row.last_error or error
        at = (row.delivered_at if outcome.result == "delivered" else row.updated_at) or at
    data: dict[str, Any] = {
        "record_id": outcome.record_id,
        "vin": outcome.vin,
        "client_id": outcome.client_id,
        "user_id": outcome.user_id,
        "destination": outcome.destination,
        "remote_paths": remote_paths if outcome.result == "delivered" else [],
        "bytes": size if outcome.result == "delivered" else 0,
        "delivered_at" if outcome.result == "delivered" else "failed_at": at,
        "attempts": attempts,
        "correlation_id": correlation_id,
    }
    if outcome.result == "failed":
        data["error"] = redact(error or "")
    return {"type": event, "timestamp": at, "data": data}


def encode(document: dict[str, Any]) -> str:
    """The exact body that is stored, signed and sent."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))

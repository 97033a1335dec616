"""Client webhooks: a signed JSON POST (Standard Webhooks) when a vehicle is delivered or finally fails.

outbox.py: the notifier, which queues notifications in the ledger's outbox and sends the due ones.
"""

from __future__ import annotations

from .outbox import (
    EVENTS,
    SECRET_PREFIX,
    Notifier,
    NotifySettings,
    backoff,
    encode,
    payload,
    sign,
    signing_key,
    webhook_headers,
)

__all__ = [
    "EVENTS",
    "SECRET_PREFIX",
    "Notifier",
    "NotifySettings",
    "backoff",
    "encode",
    "payload",
    "sign",
    "signing_key",
    "webhook_headers",
]

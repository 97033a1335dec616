"""Client webhooks: a signed JSON POST (Standard Webhooks) when a vehicle is delivered or finally fails.

outbox.py: the notifier, which queues notifications in the ledger's outbox and sends the due ones;
signing.py: the Standard Webhooks signature; client.py: the hardened HTTPS client;
payload.py: the JSON document of a notification; texts.py: the outbox told to people.
"""

from __future__ import annotations

from .outbox import Notifier, NotifySettings
from .payload import EVENTS, encode, payload
from .signing import SECRET_PREFIX, sign, signing_key, webhook_headers
from .texts import endpoint, waiting_message

__all__ = [
    "EVENTS",
    "SECRET_PREFIX",
    "Notifier",
    "NotifySettings",
    "encode",
    "endpoint",
    "payload",
    "sign",
    "signing_key",
    "waiting_message",
    "webhook_headers",
]

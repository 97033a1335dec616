"""Signing (https://www.standardwebhooks.com): HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}``
with the base64-decoded part of the client's ``whsec_...`` secret, sent as ``webhook-signature: v1,<base64>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from pydantic import SecretStr

from .. import __version__
from ..errors import ConfigError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every Standard Webhooks secret, not one


def signing_key(secret: SecretStr, where: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ``where`` names the rule file field in the error."""
    text = secret.get_secret_value().strip()
    hint = "store a secret of the form whsec_<base64 of 24 to 64 random bytes> (the endpoint's owner gives it)"
    if not text.startswith(SECRET_PREFIX):
        raise ConfigError(f"{where}: the webhook secret does not start with {SECRET_PREFIX}", hint=hint)
    encoded = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: the webhook secret after {SECRET_PREFIX} is not base64", hint=hint) from None
    if not 24 <= len(key) <= 64:
        raise ConfigError(f"{where}: the webhook secret holds {len(key)} bytes, not 24 to 64", hint=hint)
    return key


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_headers(key: bytes, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers of one attempt: content type, ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": f"ftpexport/{__version__}",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(key, webhook_id, stamp, body),
    }

"""The webhook outbox told to people: what a stopping notifier waits for, which endpoint is which.

``Notifier.close`` says what it waits for (``run`` prints it) with ``waiting_message``; ``status``
names endpoints with ``endpoint``. Nothing here sends or reads the ledger.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit


def endpoint(url: str) -> str:
    """An endpoint as shown to people: the URL without its query (it may carry a token) or fragment."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def waiting_message(rows: Iterable[dict[str, Any]], wait: float) -> str | None:
    """``waiting up to 10 s for 3 webhook notifications to acme-motors (hooks.acme.example)``,
    from the notification rows waited for (``client_id``, ``url``); None when there are none."""
    by_endpoint = Counter((row["client_id"], urlsplit(row["url"]).netloc) for row in rows)
    if not by_endpoint:
        return None
    total = sum(by_endpoint.values())
    head = f"waiting up to {wait:g} s for {_plural(total, 'webhook notification')}"
    if len(by_endpoint) == 1:
        [(client, host)] = by_endpoint
        return f"{head} to {client} ({host})"
    return f"{head}: " + ", ".join(f"{n} to {client} ({host})" for (client, host), n in sorted(by_endpoint.items()))

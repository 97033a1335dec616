"""The protocol transcript of one attempt: what was said with the server, secrets redacted.

An attempt binds a ``Recorder`` to its worker thread (``recording``); the transports look it up at
each call (``note``, ``current``), not when they connect, so that a pooled connection reused by a
later attempt records into that attempt. Without a recorder (``test-connection``, a pool closing
idle connections in its own thread) nothing is recorded and nothing costs more than a lookup.

An entry is ``{"ms": 12, "kind": "send", "text": "STOR /in/.a.zip.part"}``: milliseconds since
the attempt started, what it is (``KINDS``), and one line of text (a multi-line FTP reply keeps
its lines). A recorder is bounded: the first half of its entries and bytes is kept from the
start, the other half is the newest ones, and the entries dropped in between are counted and
shown as one entry (``N entries left out``), so a long session still shows how it began and how
it ended. Every text is redacted when the transcript is taken (``entries``): the secrets the
transports registered (``add_secrets``: the endpoint's password, key and passphrases) and, through
the ``redact`` it is given, every secret the process resolved (``secret.redact``). ``PASS`` and
``ACCT`` are masked when recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

from ..errors import printable

if TYPE_CHECKING:
    from .base import Endpoint

Kind = Literal["send", "reply", "info", "tls", "data", "request", "status", "error"]

#: what each kind of entry is
KINDS: dict[str, str] = {
    "send": "an FTP command sent",
    "reply": "an FTP reply (the greeting too)",
    "request": "an SFTP request",
    "status": "an SFTP reply: a status code, a handle, attributes; the server's version and extensions",
    "info": "connecting, reusing a connection, the SSH banner, host key and algorithms",
    "tls": "a TLS handshake: version and cipher",
    "data": "bytes on an FTP data connection, or in SFTP writes",
    "error": "how the attempt (or a step of it) failed",
}

#: entries kept per attempt at most (half from the start, half the newest)
MAX_ENTRIES = 2000
#: bytes of entry text kept per attempt at most (likewise split)
MAX_BYTES = 256 * 1024
#: one entry's text at most, in characters (a server's FEAT or banner can be long)
MAX_TEXT = 2000

_current: ContextVar[Recorder | None] = ContextVar("ftpexport_transcript", default=None)

_MASKED_COMMANDS = ("PASS", "ACCT")
#: what a secret is replaced with (``secret.MASK``; a transport does not import the secrets module)
MASK = "********"


class Recorder:
    """The entries of one attempt's transcript, bounded in number and bytes; see the module docstring."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.started = time.monotonic()
        self._head_entries = max(max_entries // 2, 1)
        self._tail_entries = max(max_entries - self._head_entries, 1)
        self._head_bytes = max(max_bytes // 2, 1)
        self._tail_bytes = max(max_bytes - self._head_bytes, 1)
        self._head: list[dict[str, Any]] = []
        self._head_size = 0
        self._head_full = False
        self._tail: deque[dict[str, Any]] = deque()
        self._tail_size = 0
        #: entries recorded and then dropped to stay within the bounds
        self.left_out = 0
        #: connections opened during this attempt (``connecting``)
        self.connections = 0
        self._secrets: set[str] = set()

    def add(self, kind: Kind, text: str) -> None:
        """Record one entry, timed now; a character that is not printable (a server's escape sequence,
        a bidi control) is kept as its escape (``\\x1b``), so that showing a transcript shows only text."""
        text = printable(text)
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT] + f"... ({len(text) - MAX_TEXT} more characters)"
        entry = {"ms": round((time.monotonic() - self.started) * 1000), "kind": kind, "text": text}
        size = len(text.encode("utf-8", "replace")) + 32
        if not self._head_full:
            if len(self._head) < self._head_entries and self._head_size + size <= self._head_bytes:
                self._head.append(entry)
                self._head_size += size
                return
            self._head_full = True
        self._tail.append(entry)
        self._tail_size += size
        while len(self._tail) > self._tail_entries or (self._tail_size > self._tail_bytes and len(self._tail) > 1):
            dropped = self._tail.popleft()
            self._tail_size -= len(dropped["text"].encode("utf-8", "replace")) + 32
            self.left_out += 1

    def add_secrets(self, values: Iterable[str | None]) -> None:
        """Values never to show: each one, and each line of a multi-line one (a key's text)."""
        for value in values:
            if not value:
                continue
            self._secrets.add(value)
            self._secrets.add(printable(value))  # as ``add`` keeps it
            self._secrets.update(line.strip() for line in value.splitlines() if len(line.strip()) >= 8)

    def entries(self, redact: Callable[[str], str] = str) -> list[dict[str, Any]]:
        """The transcript as kept: the first entries, ``N entries left out`` if any, the newest; without
        this recorder's secrets, and each text through ``redact`` too (``secret.redact``: every secret
        the process knows)."""
        kept = list(self._head)
        if self.left_out:
            first_ms = self._tail[0]["ms"] if self._tail else kept[-1]["ms"]
            kept.append({"ms": first_ms, "kind": "info",
                         "text": f"{self.left_out} entries left out (a transcript keeps {self._head_entries} from "
                                 f"the start and {self._tail_entries} of the newest)"})  # fmt: skip
        kept.extend(self._tail)
        secrets = sorted(self._secrets, key=len, reverse=True)
        return [{**entry, "text": redact(_without(entry["text"], secrets))} for entry in kept]


def _without(text: str, secrets: list[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def current() -> Recorder | None:
    """The recorder of the attempt running in this thread, if any."""
    return _current.get()


@contextmanager
def recording(recorder: Recorder | None) -> Iterator[Recorder | None]:
    """Bind ``recorder`` to this thread (and context) while inside; None records nothing."""
    token = _current.set(recorder)
    try:
        yield recorder
    finally:
        _current.reset(token)


def paused() -> contextlib.AbstractContextManager[Recorder | None]:
    """Record nothing while inside (an attempt closing other destinations' idle connections)."""
    return recording(None)


def note(kind: Kind, text: str) -> None:
    """Record an entry in the current attempt's transcript, if one is being kept."""
    recorder = _current.get()
    if recorder is not None:
        recorder.add(kind, text)


def register_secrets(values: Iterable[str | None]) -> None:
    """The current recorder (if any) never shows these values."""
    recorder = _current.get()
    if recorder is not None:
        recorder.add_secrets(values)


def connecting(endpoint: Endpoint) -> None:
    """A transport starts connecting to ``endpoint``: its secrets are registered, where to is recorded."""
    recorder = _current.get()
    if recorder is None:
        return
    recorder.connections += 1
    recorder.add_secrets(endpoint_secrets(endpoint))
    recorder.add("info", f"connecting to {endpoint.host}:{endpoint.port} ({endpoint.scheme}) as {endpoint.username}")


def reusing(endpoint: Endpoint, details: str = "") -> None:
    """The attempt got a connection opened by an earlier one (``ConnectionPool``): say so, and to where."""
    recorder = _current.get()
    if recorder is None or recorder.connections:
        return
    recorder.add_secrets(endpoint_secrets(endpoint))
    recorder.add("info", f"reusing the open connection to {endpoint.host}:{endpoint.port} ({endpoint.scheme}) "
                         f"as {endpoint.username}{'; ' + details if details else ''}")  # fmt: skip


def endpoint_secrets(endpoint: Endpoint) -> list[str]:
    """The secret values of ``endpoint``: password, key text, passphrases."""
    values = (endpoint.password, endpoint.private_key, endpoint.key_passphrase, endpoint.client_key,
              endpoint.client_key_passphrase)  # fmt: skip
    return [value.get_secret_value() for value in values if value is not None]


def ftp_command(line: str) -> str:
    """An FTP command as recorded: ``PASS`` and ``ACCT`` arguments masked."""
    verb = line.split(" ", 1)[0].upper()
    if verb in _MASKED_COMMANDS:
        return f"{verb} {MASK}"
    return line

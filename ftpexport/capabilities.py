"""What the exporter knows of each destination's server, read from the ledger and kept up to date.

On a destination's first connection in a process, what the ledger holds of it is read; when it holds
nothing, or nothing probed in the last ``MAX_AGE``, the connection learns the cheap things
(``Transport.learn``: the banner, FEAT, the SFTP extensions) and the ledger keeps them. Every
connection then works by what is known (``Transport.adopt``), and what a connection meets that
changes it (a rename that would not replace, a rename refused, SIZE not implemented, a 421 at the
Nth session) is kept as soon as it is given back. A learned session limit caps the destination's
connections (``cap``: the dispatcher's lane), below its ``max_connections``.

``test-connection`` learns everything (``probe``) and replaces what the ledger holds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .errors import FtpexportError, StateError
from .ledger import Ledger
from .transport import Transport
from .transport.capabilities import ServerCapabilities

log = logging.getLogger(__name__)

#: what was learned is learned again (the cheap part) on the first connection after this long
MAX_AGE = timedelta(days=1)


@dataclass
class _Known:
    capabilities: ServerCapabilities
    #: the cheap part is to be learned on the next connection (none kept, or too old)
    stale: bool
    #: by id(transport): what each connection was given, to tell what it learned since
    given: dict[int, ServerCapabilities] = field(default_factory=dict)


class CapabilityBook:
    """The capabilities of each destination's server (by route key), shared by the exporter's threads."""

    def __init__(self, ledger: Ledger, *, cap: Callable[[str, int], None] | None = None) -> None:
        self.ledger = ledger
        #: ``cap(destination, sessions)``: run at most this many attempts at once on the destination
        self._cap = cap
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}

    def _entry(self, destination: str) -> _Known:
        with self._lock:
            entry = self._known.get(destination)
        if entry is not None:
            return entry
        try:
            kept = self.ledger.capabilities(destination).get(destination)
        except StateError as exc:
            log.warning("what is known of the server could not be read from the ledger: %s", exc,
                        extra={"destination": destination})  # fmt: skip
            kept = None
        stale = kept is None or _older_than(kept["probed_at"], MAX_AGE)
        capabilities = ServerCapabilities.from_dict(kept["capabilities"] if kept else None)
        with self._lock:
            entry = self._known.setdefault(destination, _Known(capabilities, stale))
        if entry.capabilities.sessions and self._cap is not None:
            self._cap(destination, entry.capabilities.sessions)
        return entry

    def known(self, destination: str) -> ServerCapabilities:
        """What is known of the destination's server now (a copy)."""
        entry = self._entry(destination)
        with self._lock:
            return entry.capabilities.copy()

    def connected(self, destination: str, transport: Transport) -> None:
        """A connection about to work for ``destination``: it learns the cheap part if that is due,
        then works by what is known. Never raises for want of knowledge (nothing known: the defaults)."""
        entry = self._entry(destination)
        with self._lock:
            learn, entry.stale = entry.stale, False
        if learn:
            try:
                learned = transport.learn()
            except FtpexportError as exc:
                log.info("could not learn what the server does: %s", exc, extra={"destination": destination})
            else:
                with self._lock:
                    entry.capabilities = entry.capabilities.merged(learned)
                self._save(destination, entry)
        with self._lock:
            given = entry.capabilities.copy()
            entry.given[id(transport)] = given
        transport.adopt(given.copy())

    def released(self, destination: str, transport: Transport) -> None:
        """A connection given back: keep what it met that differs from what it was given. Never raises."""
        entry = self._entry(destination)
        with self._lock:
            given = entry.given.pop(id(transport), None)
            if given is None:
                return
            before = given.as_dict()
            met = {key: value for key, value in transport.known.as_dict().items() if before.get(key) != value}
            if not met:
                return
            entry.capabilities = entry.capabilities.merged(ServerCapabilities.from_dict(met))
        log.info("the server behaves otherwise than was known", extra={"destination": destination, "learned": met})
        self._save(destination, entry)

    def sessions_refused(self, destination: str, sessions: int) -> None:
        """The server refused a session while it may have counted ``sessions`` of ours (open or
        connecting): no more than that from now on."""
        entry = self._entry(destination)
        with self._lock:
            current = entry.capabilities.sessions
            if current is not None and current <= sessions:
                return
            entry.capabilities.sessions = sessions
            entry.capabilities.sessions_tried = None
        if self._cap is not None:
            self._cap(destination, sessions)
        self._save(destination, entry)

    def _save(self, destination: str, entry: _Known) -> None:
        with self._lock:
            document = entry.capabilities.as_dict()
        try:
            self.ledger.save_capabilities(destination, document)
        except StateError as exc:  # what was learned is learned again; the deliveries go on
            log.warning("what was learned of the server could not be kept in the ledger: %s", exc,
                        extra={"destination": destination})  # fmt: skip


def _older_than(stamp: str, age: timedelta) -> bool:
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return True
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime.now(UTC) - moment > age

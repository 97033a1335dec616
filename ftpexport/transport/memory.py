"""An in-memory server and its transport, with scriptable faults: the exporter tested offline.

The role httpx's ``MockTransport`` plays: a ``MemoryServer`` holds folders and files in memory and
is shared by every connection a test opens (the exporter's workers run in threads; every change
is made under one lock). ``server.transport`` is a transport factory (``Callable[[Endpoint],
Transport]``) for ``Exporter`` and ``ConnectionPool``. Its transport behaves like the real ones:
a ``put`` writes under the name it is given as the bytes arrive (so a cut leaves a partial file),
``size`` reports what the server holds, ``rename`` replaces the target, ``abort`` cuts a blocked
call from another thread, and after a refusal (the server answered) the connection is still
usable, after a cut it is not.

Faults are scripted on the server, each for the operations whose path matches a glob
(``fnmatch``, relative to the server's root: ``*`` matches any path, ``*.zip*`` an archive and its
hidden temporary name), ``times`` times (None: every time), first scripted first served (``at``
calls all run, before the fault due at the same moment):

- ``refuse(op, ...)``: the server answers with an error, transient (4xx) or ``permanent`` (5xx);
  ``op`` is ``login``, ``makedirs`` (a folder), ``put`` (a file), ``size``, ``rename`` or ``remove``;
- ``cut(op, ..., after=N)``: the connection drops; for ``put`` after the first N bytes reached
  the server; for ``renamed`` after the rename happened, before its reply (the client never
  learns that it did);
- ``hang(op, ..., after=N)``: the call blocks until the test releases it (it then goes on), the
  transport is aborted (a cut) or the endpoint's timeout passes (a timeout); returns a ``Hang``;
- ``at(op, ..., call)``: ``call()`` runs at that moment, under the server's lock (a test takes a
  snapshot there: what a process killed at that moment leaves behind).

``renamed`` is the moment after a rename took effect on the server; ``put`` faults with ``after``
fire once that many bytes of the file are on the server.
"""

from __future__ import annotations

import copy
import posixpath
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import AuthenticationError, PermanentError, TooManySessionsError, TransientError
from . import transcript
from .base import Capabilities, Endpoint, Transport, path_prefixes, rename_refused
from .capabilities import ServerCapabilities
from .memory_faults import Fault, FaultScript, Hang

#: bytes written per block of a ``put`` (and per progress callback)
BLOCK_SIZE = 4096


@dataclass
class MemoryServer(FaultScript):
    """Folders and files in memory, shared by the connections to it, and what they did."""

    #: False: the server does not answer SIZE (as some FTP servers); ``size`` returns None
    reports_sizes: bool = True
    #: False: a rename onto an existing file is refused (as IIS); the transport deletes it first
    replaces_on_rename: bool = True
    #: sessions open at once beyond which a login is refused (421 too many connections); None: no limit
    max_sessions: int | None = None
    files: dict[str, bytearray] = field(default_factory=dict, repr=False)
    folders: set[str] = field(default_factory=lambda: {""}, repr=False)
    #: login attempts, logins that succeeded, connections open now and at most at once
    login_attempts: int = 0
    connections: int = 0
    open_connections: int = 0
    most_open: int = 0
    #: complete ``put`` calls and renames that took effect, by path (the target for renames)
    uploads: Counter[str] = field(default_factory=Counter)
    renames: Counter[str] = field(default_factory=Counter)
    #: every request a client made, by (op, path): what a resumed attempt asked about
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: list[Fault] = field(default_factory=list)
    #: bumped by ``restart``: connections of an earlier generation are gone
    generation: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._condition = threading.Condition(self._lock)

    # --- the factory

    def transport(self, endpoint: Endpoint) -> MemoryTransport:
        """A new, not yet connected transport to this server (a ``Callable[[Endpoint], Transport]``)."""
        return MemoryTransport(endpoint, self)

    # --- the server's disk, as a test (or the DMS) sees it

    @staticmethod
    def key(path: str) -> str:
        """A path relative to the server's root, as the server stores it: ``/dms/./a`` -> ``dms/a``."""
        return posixpath.normpath("/" + path).lstrip("/")

    def read(self, path: str) -> bytes:
        with self._lock:
            return bytes(self.files[self.key(path)])

    def write(self, path: str, data: bytes) -> None:
        """Put a file there (someone else did: the DMS, an older run), with its folders."""
        path = self.key(path)
        with self._lock:
            self.folders.update(path_prefixes(posixpath.dirname(path)))
            self.files[path] = bytearray(data)

    def delete(self, path: str) -> None:
        """Take a file, or a folder and all it holds, away (the DMS ingested it)."""
        path = self.key(path)
        inside = path + "/"
        with self._lock:
            self.files = {p: data for p, data in self.files.items() if p != path and not p.startswith(inside)}
            self.folders = {p for p in self.folders if p != path and not p.startswith(inside)}

    def listing(self) -> dict[str, bytes]:
        """``{path: content}`` of every file."""
        with self._lock:
            return {path: bytes(data) for path, data in self.files.items()}

    def snapshot(self) -> MemoryServer:
        """A copy of the files, folders, uploads and renames (not the requests, nor connections or
        faults): the server as a process killed at this moment left it."""
        with self._lock:
            return MemoryServer(
                reports_sizes=self.reports_sizes,
                files=copy.deepcopy(self.files),
                folders=set(self.folders),
                uploads=Counter(self.uploads),
                renames=Counter(self.renames),
            )

    def restart(self) -> None:
        """Every open connection is dropped (a server restart); new ones are welcome."""
        with self._lock:
            self.generation += 1
            self._condition.notify_all()


class MemoryTransport(Transport):
    """A connection to a ``MemoryServer``."""

    #: a put into a folder the server removed fails (it is not made again), so the pool makes a
    #: reused connection check its folders again; ``seems_alive`` asks nothing
    capabilities = Capabilities(keeps_directories=False, quick_liveness=True)

    def __init__(self, endpoint: Endpoint, server: MemoryServer) -> None:
        super().__init__(endpoint)
        self.server = server
        self._generation: int | None = None  # None: not connected
        self._aborted = False
        #: the last failure was an answer of the server (not a cut): the connection is still usable
        self._answered = False

    # --- connecting

    def connect(self) -> None:
        server = self.server
        transcript.connecting(self.endpoint)  # as the real transports do: the attempt's transcript says so
        with server._lock:
            server.login_attempts += 1
        self._fault("login", "")
        with server._lock:
            if server.max_sessions is not None and server.open_connections >= server.max_sessions:
                raise TooManySessionsError("the server refused one more session: 421 too many connections",
                                           destination=self.endpoint.display)  # fmt: skip
            self._generation = server.generation
            server.connections += 1
            server.open_connections += 1
            server.most_open = max(server.most_open, server.open_connections)
        self._dirs.clear()

    def close(self) -> None:
        with self.server._lock:
            if self._generation is not None:
                self.server.open_connections -= 1
            self._generation = None

    def seems_alive(self) -> bool:
        """Connected, not aborted, and the server was not restarted since (asks nothing)."""
        return self._generation is not None and not self._cut()

    def _cut(self) -> bool:
        """Aborted, or dropped by a server restart."""
        return self._aborted or (self._generation is not None and self._generation != self.server.generation)

    def alive(self) -> bool:
        return self.seems_alive()

    def usable_after_error(self) -> bool:
        return self._answered and self.seems_alive()

    def abort(self) -> None:
        with self.server._condition:
            self._aborted = True
            self.server._condition.notify_all()

    # --- files and folders

    def makedirs(self, path: str) -> None:
        server = self.server
        for prefix in path_prefixes(path):
            key = server.key(prefix)
            if key in self._dirs:
                continue
            self._fault("makedirs", key)
            with server._lock:
                if key in server.files:
                    raise PermanentError("a file has the name of a folder to create (550 not a directory)",
                                         destination=self.endpoint.display, path=prefix,
                                         hint="remove or rename that file on the server")  # fmt: skip
                server.folders.add(key)
            self._dirs.add(key)

    def learn(self) -> ServerCapabilities:
        """What FEAT would say: whether the server answers SIZE."""
        learned = ServerCapabilities(protocol="memory", size=self.server.reports_sizes)
        self.known = self.known.merged(learned)
        return learned

    def size(self, path: str) -> int | None:
        """As FTP's: None for a missing file, or on a server that does not report sizes (noted in
        ``known``, and not asked again)."""
        if self.known.size is False:
            return None
        key = self.server.key(path)
        self._fault("size", key)
        with self.server._lock:
            data = self.server.files.get(key)
            if data is not None and not self.server.reports_sizes:
                self.known.size = False
            return len(data) if data is not None and self.server.reports_sizes else None

    def put(self, stream: BinaryIO, path: str, callback: Callable[[int], None] | None = None) -> int:
        server = self.server
        key = server.key(path)
        self._answered = False  # as SFTP's: usable after an error once a transfer went through
        self._fault("put", key, put_bytes=0)
        with server._lock:
            if posixpath.dirname(key) not in server.folders:
                raise PermanentError("no such folder (553 could not create file)", destination=self.endpoint.display,
                                     path=path, hint="check the destination's remote folder")  # fmt: skip
            data = server.files[key] = bytearray()
        sent = 0
        while True:
            if sent:
                self._fault("put", key, put_bytes=sent)
            block = stream.read(self._block_size(key, sent))
            if not block:
                break
            with server._lock:
                self._check_connected(path, "the transfer")
                data += block
            sent += len(block)
            if callback is not None:
                callback(len(block))
        with server._lock:
            self._check_connected(path, "the transfer")
            server.uploads[key] += 1
        self._answered = True
        return sent

    def _block_size(self, key: str, sent: int) -> int:
        """``BLOCK_SIZE``, or less when a fault is due before the end of the block."""
        with self.server._lock:
            due = [f.after for f in self.server.faults if f.after > sent and f.matches("put", key)]
        return min([BLOCK_SIZE, *(after - sent for after in due)])

    def rename(self, source: str, target: str) -> None:
        """As FTP's: a server that will not replace ``target`` gets it deleted first, at once when that
        is known (``known.rename_replaces``); what happened is noted in ``known``."""
        if self.known.rename_replaces is False:
            self.remove(target)
        elif not self._rename(source, target):
            self.known.rename_replaces = False
            self.remove(target)
        else:
            return
        if not self._rename(source, target):
            raise rename_refused(source, target, "550 file exists")

    def _rename(self, source: str, target: str) -> bool:
        """One rename request; False when the server would not replace ``target``."""
        server = self.server
        old, new = server.key(source), server.key(target)
        try:
            self._fault("rename", new, source=source, target=target)
        except PermanentError:
            self.known.rename = False
            raise
        with server._lock:
            if old not in server.files:
                raise PermanentError("no such file to rename (550)", destination=self.endpoint.display, path=source)
            if posixpath.dirname(new) not in server.folders:
                raise PermanentError("no such folder (553)", destination=self.endpoint.display, path=target)
            if new in server.files and not server.replaces_on_rename:
                return False
            server.files[new] = server.files.pop(old)
            server.renames[new] += 1
        self.known.rename = True
        self._fault("renamed", new)
        return True

    def remove(self, path: str) -> None:
        key = self.server.key(path)
        self._fault("remove", key)
        with self.server._lock:
            self.server.files.pop(key, None)

    # --- faults

    def _check_connected(self, path: str, phase: str) -> None:
        if not self.seems_alive():
            self._answered = False
            raise TransientError(f"the server closed the connection during {phase}",
                                 destination=self.endpoint.display, path=path or None)  # fmt: skip

    def _fault(self, op: str, key: str, *, put_bytes: int | None = None, source: str = "",
               target: str = "") -> None:  # fmt: skip
        """Apply the fault scripted for this moment, if any; raise as the real transports do."""
        path = key or None
        if put_bytes in (None, 0) and op != "renamed":
            with self.server._lock:
                self.server.requests[(op, key)] += 1
        if op != "login":
            self._check_connected(key, op)
        fault = self.server._take(op, key, put_bytes=put_bytes)
        if fault is None:
            return
        where = {"destination": self.endpoint.display, "path": path}
        if fault.action == "refuse":
            self._answered = True
            reason = fault.message
            if op == "login" and fault.permanent:
                raise AuthenticationError(
                    reason or "the server refused the login (530 not logged in)",
                    destination=self.endpoint.display,
                    hint="check the user name and password",
                )
            if op == "rename" and fault.permanent:
                raise rename_refused(source, target, reason or "550 permission denied").located(**where)
            if fault.permanent:
                raise PermanentError(reason or f"the server refused the {op} (550 permission denied)", **where)
            raise TransientError(reason or f"the server refused the {op} for now (450 try again later)", **where)
        elif fault.action == "cut":
            self.abort()
            self._check_connected(key, op)
        else:
            self._hold(fault.hang, key, op)  # type: ignore[arg-type]

    def _hold(self, hang: Hang, key: str, op: str) -> None:
        """Block until the test releases the call, the transport is aborted or the timeout passes."""
        with self.server._condition:
            hang.reached.set()
            held = self.server._condition.wait_for(lambda: hang.released or self._cut(), timeout=self.endpoint.timeout)
        self._answered = False
        if not held:
            self.abort()
            raise TransientError(f"timed out after {self.endpoint.timeout:g} s waiting for the server during {op}",
                                 destination=self.endpoint.display, path=key or None)  # fmt: skip
        if self._cut():
            raise TransientError(f"the server closed the connection during {op}",
                                 destination=self.endpoint.display, path=key or None)  # fmt: skip

"""Servers that count what every client did together, for the cluster tests (``cluster_harness.py``).

- ``RecordingFtpServer`` (``recording_ftp_server``): pyftpdlib in a thread with one user per destination
  (home ``root/<user>``), one password for all. It records, in order and with ``time.monotonic()``
  stamps, every session logged in and closed per user (idle ones kept for reuse included: a session
  counts from its login to its close), every complete or cut STOR and every successful RNTO.
  ``block_store(match)`` makes the first STOR of a file whose name contains ``match`` stop reading
  after its first bytes (the upload hangs until ``release()``); ``block_rename(name)`` makes the first
  RNTO to ``name`` rename the file and then never answer. Both set an Event and remember the client's
  port, so that a test can find the process holding that connection and ``kill -9`` it there.
- ``recording_sftp_server``: OpenSSH whose SFTP sessions run ``sftp-server -l INFO`` with its log in
  a file: sessions opened and closed, and renames, in order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemons import world_traversable_tempdir
from polling import DEADLINE
from servers import PyftpdlibServer, RunningServer, openssh_server

# --- the FTP server that counts


@dataclass(frozen=True)
class ServerEvent:
    """One thing a recording server saw: ``open`` / ``close`` (a logged-in session), ``stored`` /
    ``cut`` (a STOR complete or not), ``renamed`` (an RNTO done; ``path`` is the target)."""

    at: float  # time.monotonic()
    kind: str
    user: str
    path: str = ""  # relative to the user's home
    port: int = 0  # the client's port of the control connection


@dataclass
class Block:
    """A STOR or RNTO held by the server; ``reached`` is set once it holds one (then ``port``, the
    client's side of that control connection, ``user`` and ``path`` say which)."""

    kind: str  # "store" | "rename"
    match: str
    reached: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    user: str = ""
    path: str = ""
    _taken: bool = field(default=False, repr=False)
    _release: Callable[[], None] | None = field(default=None, repr=False)

    def wait(self, timeout: float = DEADLINE) -> None:
        if not self.reached.wait(timeout):
            raise TimeoutError(f"no {self.kind} of {self.match!r} reached the server within {timeout:g} s")

    def release(self) -> None:
        """Let a held STOR read on to its end (a held RNTO is never answered)."""
        assert self.kind == "store" and self._release is not None, "release a STOR once it is held"
        self._release()


class RecordingFtpServer:
    """See the module's docstring. Thread-safe reads; the handlers run in the server's thread."""

    def __init__(self, workdir: Path, users: Sequence[str], *, bytes_per_second: int = 0) -> None:
        from pyftpdlib.authorizers import DummyAuthorizer

        self.password = secrets.token_urlsafe(16)
        self._lock = threading.Lock()
        self._events: list[ServerEvent] = []
        self._blocks: list[Block] = []
        authorizer = DummyAuthorizer()
        self._server = PyftpdlibServer("ftp", workdir, self._handler_attributes(authorizer, bytes_per_second))
        self.root = self._server.root
        for user in users:
            (self.root / user).mkdir()
            authorizer.add_user(user, self.password, str(self.root / user), perm="elradfmwMT")
        self.users = list(users)
        self._running: RunningServer | None = None

    def start(self) -> RecordingFtpServer:
        self._running = self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def port(self) -> int:
        return self._server.port

    def destination(self, user: str) -> RunningServer:
        """This server as user ``user`` sees it (for ``rulefiles.ftp_destination``)."""
        assert self._running is not None and user in self.users
        return dataclasses.replace(self._running, username=user, password=self.password, root=self.root / user)

    # --- holding a command

    def block_store(self, match: str) -> Block:
        """Hold the first STOR of a file whose name contains ``match`` after its first bytes."""
        return self._add_block(Block("store", match))

    def block_rename(self, name: str) -> Block:
        """Rename the first RNTO to a file named ``name``, then never answer it."""
        return self._add_block(Block("rename", name))

    def _add_block(self, block: Block) -> Block:
        with self._lock:
            self._blocks.append(block)
        return block

    def _take_block(self, kind: str, path: str, handler: Any) -> Block | None:
        """The block this command meets, if any: taken, not yet ``reached`` (the caller sets it once
        the command is held, so that a test never sees a block half set)."""
        name = os.path.basename(path)
        with self._lock:
            for block in self._blocks:
                hit = block.match in name if kind == "store" else block.match == name
                if block.kind == kind and not block._taken and hit:
                    block._taken = True
                    block.port, block.user = int(handler.remote_port), handler.username
                    block.path = os.path.relpath(path, handler._home)
                    return block
        return None

    # --- what it saw

    def events(self, *kinds: str) -> list[ServerEvent]:
        with self._lock:
            return [e for e in self._events if not kinds or e.kind in kinds]

    def _count(self, kind: str) -> Counter[str]:
        return Counter(f"{e.user}/{e.path}" for e in self.events(kind))

    def renamed(self) -> Counter[str]:
        """Successful RNTOs per target, ``user/path``."""
        return self._count("renamed")

    def stored(self) -> Counter[str]:
        """Complete STORs per file, ``user/path``."""
        return self._count("stored")

    def closed(self, port: int) -> bool:
        """True once the session from the client's ``port`` was closed (by either side)."""
        return any(e.port == port for e in self.events("close"))

    def sessions(self) -> tuple[dict[str, int], dict[str, int]]:
        """(sessions open now, the most open at once) per user, in the order the server saw them."""
        now: Counter[str] = Counter()
        peak: Counter[str] = Counter()
        for event in self.events("open", "close"):
            now[event.user] += 1 if event.kind == "open" else -1
            peak[event.user] = max(peak[event.user], now[event.user])
        return dict(now), dict(peak)

    # --- the handler

    def _record(self, kind: str, handler: Any, path: str = "") -> None:
        # the home kept at login: a command the client sent before it went (an RNTO sent with its
        # RNFR) is done after pyftpdlib closed the session and dropped ``handler.fs``
        rel = os.path.relpath(path, handler._home) if path else path
        event = ServerEvent(time.monotonic(), kind, handler.username, rel, int(handler.remote_port or 0))
        with self._lock:
            self._events.append(event)

    def _handler_attributes(self, authorizer: Any, bytes_per_second: int) -> dict[str, Any]:
        from pyftpdlib.handlers import DTPHandler, FTPHandler, ThrottledDTPHandler

        recorder = self

        def on_login(handler: Any, username: str) -> None:
            handler._home = handler.fs.root
            if not getattr(handler, "_counted", False):
                handler._counted = True
                recorder._record("open", handler)

        def close(handler: Any) -> None:
            # counted as it closes (on_disconnect runs a loop later): before any later login is read
            if getattr(handler, "_counted", False):
                handler._counted = False
                recorder._record("close", handler)
            FTPHandler.close(handler)

        def on_file_received(handler: Any, path: str) -> None:
            recorder._record("stored", handler, path)

        def on_incomplete_file_received(handler: Any, path: str) -> None:
            recorder._record("cut", handler, path)

        def ftp_RNTO(handler: Any, path: str) -> Any:
            if handler._rnfr and (block := recorder._take_block("rename", path, handler)):
                source, handler._rnfr = handler._rnfr, None
                handler.run_as_current_user(handler.fs.rename, source, path)
                recorder._record("renamed", handler, path)
                block.reached.set()
                return None  # renamed, and the "250" never sent
            result = FTPHandler.ftp_RNTO(handler, path)
            if result:
                recorder._record("renamed", handler, path)
            return result

        class RecordingDTP(ThrottledDTPHandler if bytes_per_second else DTPHandler):  # type: ignore[misc]
            read_limit = bytes_per_second
            _held = False

            def recv(self, buffer_size: int) -> bytes:
                chunk = super().recv(buffer_size)
                hold = chunk and self.receive and not self._held and self.file_obj is not None
                if hold and (block := recorder._take_block("store", self.file_obj.name, self.cmd_channel)):
                    self._held = True
                    self.del_channel()  # read no more: the client's upload hangs
                    # release() runs in the test's thread: the server's loop resumes the reading
                    block._release = lambda: self.ioloop.call_later(0, self._resume, _errback=self.handle_error)
                    block.reached.set()
                return chunk

            def add_channel(self, map: Any = None, events: Any = None) -> None:
                if not self._held:  # the throttle's wake-up must not resume a held upload
                    super().add_channel(map, events)

            def _resume(self) -> None:
                self._held = False
                if hasattr(self, "_cancel_throttler"):
                    self._cancel_throttler()
                if not self._closed:
                    self.add_channel(events=self.ioloop.READ)

        return {
            "authorizer": authorizer,
            "on_login": on_login,
            "close": close,
            "on_file_received": on_file_received,
            "on_incomplete_file_received": on_incomplete_file_received,
            "ftp_RNTO": ftp_RNTO,
            "dtp_handler": RecordingDTP,
        }


@contextlib.contextmanager
def recording_ftp_server(
    users: Sequence[str], *, bytes_per_second: int = 0, parent: Path | None = None
) -> Iterator[RecordingFtpServer]:
    """A running ``RecordingFtpServer`` with these users; ``bytes_per_second``: each upload's cap."""
    with tempfile.TemporaryDirectory(prefix="ftpexport-recording-ftp-", dir=parent) as tmp:
        server = RecordingFtpServer(Path(tmp), users, bytes_per_second=bytes_per_second)
        try:
            yield server.start()
        finally:
            server.stop()


# --- the SFTP server that counts

SFTP_SERVER = next(
    (p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server")
     if Path(p).exists()),
    "/usr/lib/openssh/sftp-server",
)  # fmt: skip
_RENAME = re.compile(r'^(?:posix-)?rename old "(.*)" new "(.*)"$')


@dataclass(frozen=True)
class RecordingSftpServer:
    """OpenSSH whose every session is ``sftp-server -e -l INFO`` with stderr appended to ``log``
    (``ForceCommand`` runs it through the user's shell): one line per session opened and closed and
    per rename, in the order they happened."""

    server: RunningServer
    log: Path

    def _lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def sessions(self) -> tuple[int, int]:
        """(SFTP sessions open now, the most open at once)."""
        now = peak = 0
        for line in self._lines():
            if line.startswith("session opened"):
                now += 1
                peak = max(peak, now)
            elif line.startswith("session closed"):
                now -= 1
        return now, peak

    def renamed(self) -> Counter[str]:
        """Renames asked for per target, relative to the login directory (sftp-server logs a rename
        before doing it)."""
        found: Counter[str] = Counter()
        for line in self._lines():
            if match := _RENAME.match(line):
                found[os.path.relpath(match[2], self.server.root)] += 1
        return found


@contextlib.contextmanager
def recording_sftp_server(parent: Path | None = None) -> Iterator[RecordingSftpServer]:
    """A running ``RecordingSftpServer`` (see ``servers.openssh_server``)."""
    folder = world_traversable_tempdir("ftpexport-sftp-log-", parent)
    log = folder / "sftp-server.log"
    log.touch()
    log.chmod(0o666)  # appended to by the temporary user's sftp-server
    try:
        command = f"ForceCommand {SFTP_SERVER} -e -l INFO 2>>{log}"
        with openssh_server(extra_config=("Match all", command), parent=parent) as server:
            yield RecordingSftpServer(server, log)
    finally:
        log.unlink(missing_ok=True)
        folder.rmdir()

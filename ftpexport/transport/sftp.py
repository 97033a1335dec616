"""SFTP transport, built on paramiko, that only talks to servers whose host key is pinned.

The server's key must match one of ``Endpoint.host_keys`` (OpenSSH public key lines) or an entry of
``Endpoint.known_hosts``. Unknown keys are refused, never added: there is no AutoAddPolicy here.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import posixpath
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import paramiko

from ..errors import PermanentError, TransientError
from . import transcript
from .base import Capabilities, Endpoint, Transport, path_prefixes
from .capabilities import ServerCapabilities
from .sftp_capabilities import SFTPClient
from .sftp_errors import map_errors
from .sftp_recording import RecordingSFTPClient
from .sftp_rename import SFTPRenames
from .sftp_writes import AckedWriter, read_blocks
from .ssh_connect import NoPinnedKeyType, authenticate, close_ssh, disconnect_error, handshake
from .ssh_host_keys import pinned_keys, verify_host_key
from .ssh_negotiation import legacy_in_use

log = logging.getLogger(__name__)

# paramiko logs a failed handshake at ERROR with a traceback; with no handler anywhere, Python
# would print it on stderr. ``logs.setup_logging`` turns it into debug lines; without it, nothing.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class SFTPTransport(SFTPRenames, Transport):
    """A connection to an SFTP server whose host key is pinned.

    Like every transport, it serves one attempt at a time (the pool hands it out to one job), so
    its state needs no lock.
    """

    #: The directory cache stays valid from one job to the next (``ConnectionPool`` does not clear
    #: it): ``put`` notices that a cached folder was removed on the server meanwhile (a DMS removes a
    #: folder once it has ingested it) and creates it again, so a stale cache costs a round trip or
    #: two, never a failed delivery. ``seems_alive`` needs no round trip (paramiko's reader thread
    #: notices a closed connection at once).
    capabilities = Capabilities(keeps_directories=True, quick_liveness=True)

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self._transport: paramiko.Transport | None = None
        self._sftp: SFTPClient | None = None
        self._fingerprint: str | None = None
        #: the server's public key as a ``host_key`` line, known after the handshake
        self.server_key_line: str | None = None
        #: ``(path, size)`` FSTAT reported at the end of the last ``put``, for the ``size(path)``
        #: of the size check that comes right after it: see ``_take_known_size``
        self._known_size: tuple[str, int] | None = None
        #: what the key exchange agreed on: ``kex``, ``host_key``, ``cipher``, ``mac``
        self.algorithms: dict[str, str] = {}
        #: False after a ``put`` that failed without an answer of the server (cut, timeout)
        self._answered = True

    @property
    def sftp(self) -> SFTPClient:
        endpoint = self.endpoint
        if self._sftp is None:
            raise TransientError("not connected", destination=endpoint.display)
        if not self.seems_alive():
            # A request on a closed channel raises a bare OSError("Socket is closed"), which would
            # read as a refusal; this is a dropped connection, and the attempt is retried
            # (``map_errors``, around every use, says so with the phase).
            raise EOFError("the SSH connection is closed")
        return self._sftp

    @property
    def legacy_in_use(self) -> list[str]:
        """The legacy algorithms (``ssh_legacy_algorithms``) the current connection negotiated."""
        return legacy_in_use(self.algorithms)

    @property
    def server_fingerprint(self) -> str | None:
        """The server's host key fingerprint (``SHA256:...``), known once connected."""
        return self._fingerprint

    # --- connection

    def connect(self) -> None:
        """Connect, verify the server's host key against the pinned ones, then log in."""
        endpoint = self.endpoint
        pinned = pinned_keys(endpoint)
        self._dirs.clear()
        self._known_size = None
        transcript.connecting(endpoint)
        self.algorithms = {}
        try:
            shaken = handshake(endpoint, pinned)
        except NoPinnedKeyType:
            # The server has no key of a pinned type: shake hands again to tell the user which key it has.
            shaken = handshake(endpoint, set())
        transport, key = shaken.transport, shaken.key
        self._fingerprint, self.server_key_line = shaken.fingerprint, shaken.key_line
        self.algorithms = shaken.algorithms
        try:
            with map_errors(endpoint, phase="login"):
                verify_host_key(endpoint, key, pinned)
                authenticate(endpoint, transport)
                sftp = RecordingSFTPClient.from_transport(transport)
                if sftp is None:
                    raise TransientError("the server did not open an SFTP session")
                sftp.get_channel().settimeout(endpoint.timeout)
        except BaseException as exc:
            said = disconnect_error(endpoint, transport, exc)
            close_ssh(transport)
            if said is not None and said is not exc:
                raise said from exc
            raise
        self._transport, self._sftp = transport, sftp
        log.debug("connected", extra={"destination": endpoint.display, "fingerprint": self._fingerprint,
                                      "algorithms": self.algorithms})  # fmt: skip
        for name in self.legacy_in_use:
            log.info("legacy SSH algorithm in use", extra={"destination": endpoint.display, "algorithm": name})

    def close(self) -> None:
        """Close the SFTP session and the SSH connection; never raises."""
        sftp, self._sftp = self._sftp, None
        transport, self._transport = self._transport, None
        self._known_size = None
        try:
            if sftp is not None:
                sftp.close()
        except Exception as exc:  # a dead connection is what we are closing anyway
            log.debug("closing the SFTP session failed: %r", exc)
        if transport is not None:
            close_ssh(transport)

    def seems_alive(self) -> bool:
        """The SSH connection is up and the SFTP channel open, as far as we know without asking the
        server (paramiko's reader thread notices a closed connection at once)."""
        sftp, transport = self._sftp, self._transport
        return sftp is not None and transport is not None and transport.is_active() and not sftp.get_channel().closed

    def usable_after_error(self) -> bool:
        """The last ``put`` failed on an error the server answered (not a cut or a timeout), and the
        SSH connection and the SFTP channel are open."""
        return self._answered and self.seems_alive()

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Each SFTP answer within ``seconds`` while inside."""
        channel = self._sftp.get_channel() if self._sftp is not None else None
        if channel is None:
            yield
            return
        channel.settimeout(seconds)
        try:
            yield
        finally:
            channel.settimeout(self.endpoint.timeout)

    def alive(self) -> bool:
        """The SSH connection is up and the SFTP session answers a request."""
        self._known_size = None
        if self._sftp is None or not self.seems_alive():
            return False
        try:
            self._sftp.normalize(".")
        except (OSError, EOFError, paramiko.SSHException) as exc:
            log.debug("pooled connection is dead: %r", exc, extra={"destination": self.endpoint.display})
            return False
        return True

    def abort(self) -> None:
        """Close the SSH socket; a blocked read or write fails at once."""
        transport = self._transport
        if transport is None:
            return
        with contextlib.suppress(OSError, AttributeError):  # closed already
            transport.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]

    # --- what the server does

    def learn(self) -> ServerCapabilities:
        """The SSH banner, the SFTP version and extensions (known since the session opened) and, when
        the server lists limits@openssh.com, its limits (one round trip)."""
        transport = self._transport
        with map_errors(self.endpoint, phase="login"):
            learned = self.sftp.capabilities(transport.remote_version if transport is not None else None)
        self.known = self.known.merged(learned)
        return learned

    def mkdir_existing_fails(self, path: str) -> bool | None:
        """MKDIR of the existing folder ``path``: True when the server refuses it."""
        with map_errors(self.endpoint, path, phase="folder"):
            try:
                self.sftp.mkdir(path)
            except OSError:
                return True
        return False

    # --- file operations

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its missing parents.

        Round trips: none for a folder in the cache; one (MKDIR) for a new folder whose parent is
        in it; on a new connection one STAT for an existing folder (its parents exist then too).
        """
        self._known_size = None
        self._makedirs(path, trust_cache=True)

    def _makedirs(self, path: str, *, trust_cache: bool) -> None:
        prefixes = path_prefixes(path)
        known = [i for i, prefix in enumerate(prefixes) if prefix in self._dirs]
        missing: list[str] = []  # to create, deepest first
        # the parent of missing[-1] is known from an earlier call only (it may be gone since)
        parent_from_cache = False
        if known:
            # Below a folder known to exist: no STAT, MKDIR each one (it tells if one existed already).
            missing = prefixes[known[-1] + 1 :][::-1]
            parent_from_cache = True
        else:
            # Nothing known (a new connection): up from the deepest folder with STAT to one that
            # exists, whose parents then exist too. An existing folder costs one round trip.
            for depth in range(len(prefixes) - 1, -1, -1):
                prefix = prefixes[depth]
                with map_errors(self.endpoint, prefix, phase="folder"):
                    mode = self._mode(prefix)
                if mode is None:
                    missing.append(prefix)
                    continue
                if not stat.S_ISDIR(mode):
                    raise PermanentError(
                        "cannot create the directory: a file has this name",
                        destination=self.endpoint.display,
                        path=prefix,
                    )
                self._dirs.update(prefixes[: depth + 1])
                break
        # Down again, creating each missing folder (its parent exists now): one MKDIR for a new
        # folder. A MKDIR that fails means the folder exists already (another connection may have
        # created it meanwhile) or a real error: STAT tells which.
        for prefix in reversed(missing):
            with map_errors(self.endpoint, prefix, phase="folder"):
                try:
                    self.sftp.mkdir(prefix)
                except OSError:
                    mode = self._mode(prefix)
                    if mode is None and parent_from_cache and trust_cache:
                        # The cached parent may be gone (removed on the server since we saw it):
                        # forget the cache and start again, asking the server about every folder.
                        log.debug("a cached folder is gone; checking the folders again", extra={"remote_path": prefix})
                        self.forget_directories()
                        self._makedirs(path, trust_cache=False)
                        return
                    if mode is None or not stat.S_ISDIR(mode):
                        raise
            self._dirs.add(prefix)
            parent_from_cache = False

    def _mode(self, path: str) -> int | None:
        try:
            return self.sftp.stat(path).st_mode
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    def _take_known_size(self, path: str) -> int | None:
        """The size FSTAT reported for ``path`` at the end of ``put``, if nothing else happened since.

        Handed over once, and only to a ``size`` of the same path called right after that ``put``
        (every other operation forgets it): the size check after an upload then needs no STAT,
        and no later question gets an old answer.
        """
        known, self._known_size = self._known_size, None
        if known is not None and known[0] == path:
            return known[1]
        return None

    def size(self, path: str) -> int | None:
        """The size of file ``path``; None when there is no such file."""
        known = self._take_known_size(path)
        if known is not None:
            return known
        with map_errors(self.endpoint, path, phase="size"):
            try:
                attributes = self.sftp.stat(path)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise
        if attributes.st_mode is not None and not stat.S_ISREG(attributes.st_mode):
            return None
        return attributes.st_size

    def put(self, stream: BinaryIO, path: str, callback: Callable[[int], None] | None = None) -> int:
        """Write ``stream`` to ``path`` with pipelined writes, each one acknowledged; return the bytes sent.

        The size the server has at the end is kept for the ``size(path)`` that follows (see
        ``_take_known_size``).
        """
        self._known_size = None
        self._answered = False
        sent = 0
        with map_errors(self.endpoint, path, phase="transfer", writing=True):
            remote = self._open_for_writing(path)
            writer: AckedWriter | None = None
            try:
                writer = AckedWriter(self.sftp, remote.handle, self.known.limits)
                for block in read_blocks(stream, writer.request_size):
                    writer.write(block)
                    sent += len(block)
                    if callback is not None:
                        callback(len(block))
                size = writer.close(remote)
            except Exception as exc:
                # the server refused a write (a full disk): it answered, and the session goes on
                self._answered = writer is not None and exc is writer.error
                raise
            finally:
                # After a failure before ``writer.close``: CLOSE and wait, its errors ignored, as
                # paramiko does (the connection is not reused). A no-op once the writer closed it.
                remote.close()
        self._answered = True
        if size is not None:
            self._known_size = (path, size)
        return sent

    def _open_for_writing(self, path: str) -> paramiko.SFTPFile:
        """``open(path, "wb")``; if its folder is in the cache but gone on the server, create it and retry once."""
        try:
            return self.sftp.open(path, "wb")
        except OSError as exc:
            folders = path_prefixes(posixpath.dirname(path))
            if exc.errno != errno.ENOENT or not folders or folders[-1] not in self._dirs:
                raise
            # The cache says the folder exists, so makedirs sent nothing; it was removed on the
            # server since (a DMS that removes a folder after ingesting it). One more open is
            # cheaper than a STAT of the folder before every job.
            log.info("the remote folder is gone; creating it again", extra={"remote_path": folders[-1]})
            self.forget_directories()
            self.makedirs(folders[-1])
            return self.sftp.open(path, "wb")

    def remove(self, path: str) -> None:
        """Delete file ``path``; a missing file is fine."""
        self._known_size = None
        with map_errors(self.endpoint, path, phase="delete"):
            try:
                self.sftp.remove(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise

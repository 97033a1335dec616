"""The transport interface: a connection to one server that can write files atomically.

A transport knows nothing of rules, records or the ledger. It is given an ``Endpoint`` (where and
how to connect) and remote paths. Paths are POSIX strings; a relative path is relative to the
directory the server puts us in after login, an absolute one starts at the server's root.

Each backend turns its library's exceptions into ours (``errors.TransientError`` and friends)
in one ``map_errors()`` context manager, so callers only ever see ftpexport errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, ClassVar, Literal

from pydantic import SecretStr

from ..errors import PermanentError, RecordChangedError, RemoteExistsError, TransientError, TransportError
from .capabilities import ServerCapabilities

log = logging.getLogger(__name__)

Scheme = Literal["ftp", "ftps", "ftps+implicit", "sftp"]
IfExists = Literal["overwrite", "skip", "fail"]

#: the longest file name most servers accept, in bytes
MAX_NAME_BYTES = 255

#: seconds a cleanup after a failure may wait for each answer (removing a temporary file)
CLEANUP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect. Secrets are ``SecretStr``; the repr shows none of them."""

    scheme: Scheme
    host: str
    port: int
    username: str
    password: SecretStr | None = None
    #: seconds for connect, login and each transfer step
    timeout: float = 30.0
    #: a human name for messages, e.g. ``acme-motors/dms``
    label: str = ""
    # FTP / FTPS
    ca_file: Path | None = None
    passive: bool = True
    #: FTPS client certificate (mutual TLS): a PEM file, and its key as a file or from the store
    client_cert: Path | None = None
    client_key_file: Path | None = None
    client_key: SecretStr | None = None
    client_key_passphrase: SecretStr | None = None
    # SFTP: the server key must match one of ``host_keys`` (OpenSSH public key lines,
    # "ssh-ed25519 AAAA...") or an entry of ``known_hosts``; one of the two is required.
    host_keys: tuple[str, ...] = ()
    known_hosts: Path | None = None
    key_file: Path | None = None
    private_key: SecretStr | None = None
    key_passphrase: SecretStr | None = field(default=None)
    #: old SSH algorithms to offer besides the modern ones (``ssh_policy.LEGACY`` names)
    ssh_legacy_algorithms: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        """``label`` if set, else ``scheme://user@host:port``; never a secret."""
        return self.label or f"{self.scheme}://{self.username}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Capabilities:
    """What a transport can do beyond the interface, declared by each backend (``Transport.capabilities``).

    The defaults are what every transport can be assumed to do; a backend that can do more says so
    on its class, and its users (``ConnectionPool``) read these, never ``getattr``.
    """

    #: the folder cache stays valid from one job to the next: a transfer into a cached folder that
    #: the server removed meanwhile makes it again, so the pool need not ``forget_directories``
    keeps_directories: bool = False
    #: ``seems_alive`` tells a dead connection without asking the server (no round trip), so the pool
    #: may reuse a connection released a moment ago after that check alone
    quick_liveness: bool = False


class Transport(ABC):
    """One open connection to one server. Use as a context manager: ``with transport: ...``."""

    #: what this backend can do beyond the interface (see ``Capabilities``)
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: the server's public key as a ``host_key`` line, once connected (SFTP); None otherwise
    server_key_line: str | None = None

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        #: directories known to exist, so a batch does not re-create them; valid for one job only
        #: (a DMS may delete a folder after ingesting it), see ``forget_directories``
        self._dirs: set[str] = set()
        #: what is known of this server: given by the caller (``adopt``), and noted by the transport
        #: as it meets it (a rename that does not replace, SIZE not implemented); it decides how the
        #: transport works, within what the caller asks (see ``transport.capabilities``)
        self.known = ServerCapabilities()

    def __enter__(self) -> Transport:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint.display})"

    @abstractmethod
    def connect(self) -> None:
        """Connect, secure the channel, verify the server and log in."""

    @abstractmethod
    def close(self) -> None:
        """Log out and close; never raises."""

    @abstractmethod
    def makedirs(self, path: str) -> None:
        """Create directory ``path`` and its missing parents; existing ones are fine."""

    @abstractmethod
    def size(self, path: str) -> int | None:
        """The size in bytes of file ``path``, or None when there is no such file."""

    @abstractmethod
    def put(self, stream: BinaryIO, path: str, callback: Callable[[int], None] | None = None) -> int:
        """Write ``stream`` to file ``path`` (replacing it); return the bytes sent.

        ``callback`` is called with the size of each block sent.
        """

    @abstractmethod
    def rename(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target``, replacing ``target`` if it exists."""

    @abstractmethod
    def remove(self, path: str) -> None:
        """Delete file ``path``; a missing file is not an error."""

    @abstractmethod
    def alive(self) -> bool:
        """True when the connection still answers; checked before a pooled connection is reused."""

    @abstractmethod
    def abort(self) -> None:
        """Cut the connection from another thread, so that a blocked transfer fails now; never raises."""

    def seems_alive(self) -> bool:
        """Whether the connection is up as far as known without asking the server.

        Only used when ``capabilities.quick_liveness`` is declared; otherwise it asks (``alive``).
        """
        return self.alive()

    def adopt(self, known: ServerCapabilities) -> None:
        """Work by what is known of the server (learned earlier, kept in the ledger)."""
        self.known = known

    def learn(self) -> ServerCapabilities:
        """What a connected transport can learn of its server cheaply (the banner, FEAT, the SFTP
        extensions): at most one round trip. Also noted in ``known``."""
        return ServerCapabilities()

    def mkdir_existing_fails(self, path: str) -> bool | None:
        """Whether making the folder ``path``, which exists, fails (the probe asks); None: not known."""
        return None

    def forget_directories(self) -> None:
        """Forget which directories exist: called when a pooled connection starts a new job."""
        self._dirs.clear()

    def usable_after_error(self) -> bool:
        """Whether the connection can still be asked something after an operation failed.

        False unless a backend knows better: after a timeout or a cut, the server may still answer
        the failed request, and a new request would read that answer.
        """
        return False

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Wait at most ``seconds`` for each answer inside the block (for cleanups after a failure)."""
        yield

    def discard(self, path: str) -> bool:
        """Best effort: delete ``path`` after a failed upload, quickly, if the connection is still usable.

        Never raises: the caller raises the error that made the upload fail. Returns True when the file
        is gone.
        """
        where = {"destination": self.endpoint.display, "remote_path": path}
        if not self.usable_after_error():
            log.debug("the temporary file stays: the connection is not usable after the failure", extra=where)
            return False
        try:
            with self.deadline(min(self.endpoint.timeout, CLEANUP_TIMEOUT)):
                self.remove(path)
        except Exception as exc:  # best effort: the error of the upload is the one to report
            log.debug("could not remove the temporary file: %s", exc, extra=where)
            return False
        log.debug("removed the temporary file of the failed upload", extra=where)
        return True

    @property
    def server_fingerprint(self) -> str | None:
        """The server's key fingerprint (SFTP, ``SHA256:...``) once connected; None otherwise."""
        return None

    @property
    def legacy_in_use(self) -> list[str]:
        """The legacy SSH algorithms (``ssh_legacy_algorithms``) the connection negotiated; none but for SFTP."""
        return []


def path_prefixes(path: str) -> list[str]:
    """Each directory from the top down to ``path``: ``a/b`` -> ``["a", "a/b"]``; ``/a`` -> ``["/a"]``."""
    prefix = "/" if path.startswith("/") else ""
    prefixes = []
    for part in (p for p in path.split("/") if p and p != "."):
        prefix = posixpath.join(prefix, part)
        prefixes.append(prefix)
    return prefixes


@dataclass(frozen=True)
class Upload:
    """What one upload did: the final remote path, the bytes sent, whether it was skipped, and
    whether the server's size of the file was checked (False: the server does not report sizes)."""

    path: str
    size: int
    skipped: bool = False
    size_checked: bool = True


def temporary_name(name: str) -> str:
    """The hidden name a file is uploaded under before it is renamed to ``name``.

    It is the same for every attempt, so a retry overwrites what a failed one left behind.
    """
    candidate = f".{name}.part"
    if len(candidate.encode()) <= MAX_NAME_BYTES:
        return candidate
    digest = hashlib.sha256(name.encode()).hexdigest()[:20]
    return f".ftpexport-{digest}.part"


def upload_file(
    transport: Transport,
    open_source: Callable[[], BinaryIO],
    size: int,
    remote_dir: str,
    name: str,
    *,
    atomic: bool = True,
    if_exists: IfExists = "overwrite",
    callback: Callable[[int], None] | None = None,
    before_rename: Callable[[str], None] | None = None,
) -> Upload:
    """Upload one file to ``remote_dir/name``: temporary name, size check, rename.

    The directory must exist. With ``atomic=False`` the file is written under its final name
    (for servers that cannot rename); the size is still checked. What is known of the server
    (``transport.known``) chooses how, never against ``atomic``: a server known not to report sizes is
    not asked (the ``Upload`` says the size was not checked); a rename that cannot replace is the
    transport's (``rename``). A source with ``verify()`` (a record's image, ``recordfiles.CheckedFile``)
    is asked once it is sent, before the size check: it raises if the file was written meanwhile,
    and nothing is renamed (the temporary file is removed). ``before_rename(final path)`` is
    called once the temporary file is complete, just before it takes its final name: the caller
    journals there that the rename may have happened (the crash journal: ``ftpexport.publish``).
    """
    final = posixpath.join(remote_dir, name)
    if if_exists != "overwrite":
        existing = transport.size(final)
        if existing is not None:
            if if_exists == "skip":
                log.info("remote file exists, skipped", extra={"remote_path": final})
                return Upload(final, 0, skipped=True)
            raise RemoteExistsError(
                "the file exists already and the rule says if_exists: fail",
                destination=transport.endpoint.display,
                path=final,
                hint="remove it on the server, or set upload.if_exists to overwrite or skip",
            )
    target = posixpath.join(remote_dir, temporary_name(name)) if atomic else final
    try:
        with open_source() as stream:
            sent = transport.put(stream, target, callback)
            _verify_source(transport, stream, target if atomic else None)
        size_checked = _check_size(transport, target, expected=size, sent=sent)
    except TransportError:
        if atomic:
            transport.discard(target)  # a hidden partial file must not wait for the next success
        raise
    if before_rename is not None:
        before_rename(final)
    if atomic:
        try:
            transport.rename(target, final)
        except TransportError as exc:
            if not exc.retriable:
                _remove_quietly(transport, target)  # a refused rename: leave no hidden file behind
            raise
    return Upload(final, sent, size_checked=size_checked)


def _verify_source(transport: Transport, stream: BinaryIO, temporary: str | None) -> None:
    """A source that can tell (``verify()``: a record's image) is still the file that was read, not
    written while it was sent; else its error, once ``temporary`` (what was sent) is removed."""
    verify = getattr(stream, "verify", None)
    if verify is None:
        return
    try:
        verify()
    except RecordChangedError:
        if temporary is not None:
            transport.discard(temporary)
        raise


RENAME_REFUSED_HINT = (
    "if this server never allows renaming, set upload.atomic: false for this destination (files are "
    "then written under their final names), or ask the DMS administrator to allow renames in this folder"
)


def rename_refused(source: str, target: str, reply: str) -> PermanentError:
    """The error for a server that refused to rename ``source`` to ``target``: says so, and what to do."""
    if posixpath.dirname(source) == posixpath.dirname(target):
        source, target = posixpath.basename(source), posixpath.basename(target)
    return PermanentError(f"the server refused to rename {source} to {target}: {reply}", hint=RENAME_REFUSED_HINT)


def _remove_quietly(transport: Transport, path: str) -> None:
    try:
        transport.remove(path)
    except TransportError as exc:
        log.debug("could not remove %s: %s", path, exc.reason)


def _check_size(transport: Transport, path: str, *, expected: int, sent: int) -> bool:
    """Refuse to publish a file whose remote size is not the local size; False when the server could
    not tell its size (then the completed transfer is trusted, and the log says the size was not checked)."""
    if sent != expected:
        raise PermanentError(
            f"sent {sent} bytes but the source has {expected}: the local file changed during upload",
            destination=transport.endpoint.display,
            path=path,
        )
    remote = transport.size(path)  # None, not asked, on a server known not to report sizes
    if remote is None:
        # Some servers do not answer SIZE; the transfer itself completed without error.
        log.info("the size was not checked: the server does not report sizes (SIZE); the completed transfer is "
                 "trusted", extra={"destination": transport.endpoint.display, "remote_path": path,
                                   "size_checked": False})  # fmt: skip
        return False
    if remote != expected:
        # ``upload_file`` removes the partial file (best effort, the error stands)
        raise TransientError(
            f"the server has {remote} bytes after upload, expected {expected}",
            destination=transport.endpoint.display,
            path=path,
        )
    return True

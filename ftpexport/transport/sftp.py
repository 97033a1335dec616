"""SFTP transport, built on paramiko, that only talks to servers whose host key is pinned.

The server's key must match one of ``Endpoint.host_keys`` (OpenSSH public key lines) or an entry of
``Endpoint.known_hosts``. Unknown keys are refused, never added: there is no AutoAddPolicy here.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import io
import logging
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from paramiko.sftp import CMD_STATUS, CMD_WRITE, int64

from ..errors import (
    AuthenticationError,
    HostKeyError,
    PermanentError,
    TransientError,
    TransportError,
)
from .base import Endpoint, Transport, path_prefixes

log = logging.getLogger(__name__)

#: bytes read from the source per write; paramiko splits them into SFTP packets and pipelines them
CHUNK_SIZE = 256 * 1024

# Host key algorithms paramiko may negotiate for a key of each type (RSA keys sign with SHA-2).
_ALGORITHMS_FOR_KEY_TYPE: dict[str, tuple[str, ...]] = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}

REPIN_WARNING = (
    "the server key changed: this can be a reinstalled server or an attack; confirm the new "
    "fingerprint with the server's operator before pinning it"
)


def fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH SHA256 fingerprint of a public key: ``SHA256:`` + unpadded base64."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def public_key_line(key: paramiko.PKey) -> str:
    """The OpenSSH public key line of a key, as ``host_key`` expects it."""
    return f"{key.get_name()} {key.get_base64()}"


def parse_host_key(line: str) -> tuple[str, bytes]:
    """``(type, blob)`` of an OpenSSH public key line; a leading host field (known_hosts) is allowed."""
    fields = line.split()
    # "host ssh-ed25519 AAAA..." (ssh-keyscan output) as well as "ssh-ed25519 AAAA... comment"
    for i in range(min(2, len(fields) - 1)):
        key_type, data = fields[i], fields[i + 1]
        try:
            blob = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            continue
        if blob[4 : 4 + len(key_type.encode())] == key_type.encode():
            return key_type, blob
    raise ValueError("not an OpenSSH public key line (expected 'ssh-ed25519 AAAA...')")


def _load_private_key(data: bytes, passphrase: str | None) -> paramiko.PKey:
    """A paramiko key from private key text (OpenSSH or PEM), like ``PKey.from_path`` does for files."""
    password = passphrase.encode() if passphrase is not None else None
    try:
        loaded = serialization.load_ssh_private_key(data, password=password)
    except ValueError:
        loaded = serialization.load_pem_private_key(data, password=password)
    key_class: type[paramiko.PKey]
    if isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise paramiko.SSHException(f"unsupported private key type {type(loaded).__name__}")
    return key_class.from_private_key(io.StringIO(data.decode()), password=passphrase)


class _NoPinnedKeyType(Exception):
    """The server offers no host key of the pinned types (raised inside ``connect`` only)."""


def _close_transport(transport: paramiko.Transport) -> None:
    """Close an SSH connection and its threads; never raises."""
    try:
        transport.close()
    except Exception as exc:
        log.debug("closing the SSH connection failed: %r", exc)
    # paramiko leaves its handshake timer thread running when the handshake failed; cancel it.
    transport.packetizer.complete_handshake()


@contextmanager
def map_errors(endpoint: Endpoint, path: str | None = None, *, writing: bool = False) -> Iterator[None]:
    """Turn paramiko, SFTP and socket errors into ftpexport errors naming the destination and path."""
    where = {"destination": endpoint.display, "path": path}
    try:
        yield
    except TransportError as exc:
        exc.located(**where)
        raise
    except paramiko.AuthenticationException as exc:
        # paramiko's messages name the allowed methods at most, never the credentials.
        raise AuthenticationError(
            f"login refused: {exc}", **where, hint="check the user name and the password or key"
        ) from exc
    except paramiko.SSHException as exc:
        if isinstance(exc.__cause__ or exc.__context__, TimeoutError):
            # e.g. "Error reading SSH protocol banner", raised while handling a socket timeout
            raise TransientError(f"timed out after {endpoint.timeout:g} s: {exc}", **where) from exc
        raise TransientError(f"SSH error: {exc}", **where) from exc
    except TimeoutError as exc:
        raise TransientError(f"timed out after {endpoint.timeout:g} s", **where) from exc
    except EOFError as exc:
        raise TransientError("the server closed the connection", **where) from exc
    except ConnectionRefusedError as exc:
        raise TransientError("connection refused: is the server running on this port?", **where) from exc
    except ConnectionError as exc:
        raise TransientError(f"network error: {exc.strerror or exc}", **where) from exc
    except socket.gaierror as exc:
        raise TransientError(f"cannot resolve host {endpoint.host}: {exc.strerror}", **where) from exc
    except OSError as exc:
        # paramiko raises IOError(errno, server text) for SFTP status codes, IOError(text) otherwise.
        text = exc.strerror or str(exc)
        if exc.errno == errno.ENOENT:
            raise PermanentError(f"no such file or directory: {text}", **where) from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PermanentError(f"permission denied: {text}", **where) from exc
        if exc.errno is None and writing:
            # OpenSSH reports ENOSPC and EDQUOT as a bare SSH_FX_FAILURE ("Failure").
            raise TransientError(
                f"the server could not write the file: {text}",
                **where,
                hint="usually the disk is full or a quota is exceeded on the server; the delivery is retried, "
                "then parked as failed",
            ) from exc
        if exc.errno is None:
            raise PermanentError(f"the server refused: {text}", **where) from exc
        raise TransientError(f"network error: {text}", **where) from exc


class _AckedWriter:
    """Pipelined SFTP writes whose every status reply is checked.

    paramiko's pipelined ``SFTPFile.write`` drops the server's replies to the writes, so a write
    the server refused (disk full: ``SSH_FX_FAILURE``) goes unnoticed, and a failure in the middle
    of a file could even leave a hole that a size check cannot see. Here each write is registered
    with this object, which keeps the first error; at most ``WINDOW`` writes are unanswered.
    """

    #: bytes per SFTP write request at most (what OpenSSH and paramiko use)
    REQUEST_SIZE = 32768
    WINDOW = 64

    def __init__(self, sftp: paramiko.SFTPClient, handle: bytes) -> None:
        self.sftp = sftp
        self.handle = handle
        # A whole write request in one SSH packet: paramiko cuts channel data at the peer's maximum
        # packet size minus 64, and a 32768-byte write plus its 25-byte header and the handle
        # would be cut in two, its tiny tail held back by Nagle (measured: x2.3 on many small files).
        limit = sftp.get_channel().out_max_packet_size - 64 - (25 + len(handle))
        self.request_size = max(1024, min(self.REQUEST_SIZE, limit))
        self.offset = 0
        self.unanswered = 0
        self.error: BaseException | None = None

    def write(self, data: bytes) -> None:
        for start in range(0, len(data), self.request_size):
            piece = data[start : start + self.request_size]
            while self.unanswered >= self.WINDOW:
                self._read_one()
            self.sftp._async_request(self, CMD_WRITE, self.handle, int64(self.offset), piece)
            self.unanswered += 1
            self.offset += len(piece)

    def finish(self) -> None:
        """Wait for every reply; raise the first write error (an IOError, as paramiko raises them)."""
        while self.unanswered:
            self._read_one()
        if self.error is not None:
            raise self.error

    def _read_one(self) -> None:
        self.sftp._read_response()  # one packet: calls _async_response below
        if self.error is not None:
            raise self.error

    # called by paramiko for each reply to a request registered with this object
    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self.unanswered -= 1
        if t != CMD_STATUS:
            self.error = self.error or paramiko.SFTPError(f"unexpected reply {t} to a write")
            return
        try:
            self.sftp._convert_status(msg)
        except Exception as exc:  # IOError(errno, text) or EOFError, kept for finish()
            self.error = self.error or exc


class SFTPTransport(Transport):
    """A connection to an SFTP server whose host key is pinned."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._fingerprint: str | None = None
        #: the server's public key as a ``host_key`` line, known after the handshake
        self.server_key_line: str | None = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            raise TransientError("not connected", destination=self.endpoint.display)
        return self._sftp

    @property
    def server_fingerprint(self) -> str | None:
        """The server's host key fingerprint (``SHA256:...``), known once connected."""
        return self._fingerprint

    # --- connection

    def connect(self) -> None:
        """Connect, verify the server's host key against the pinned ones, then log in."""
        endpoint = self.endpoint
        pinned = self._pinned_keys()
        self._dirs.clear()
        try:
            transport, key = self._handshake(pinned)
        except _NoPinnedKeyType:
            # The server has no key of a pinned type: shake hands again to tell the user which key it has.
            transport, key = self._handshake(set())
        try:
            with map_errors(endpoint):
                self._verify(key, pinned)
                self._authenticate(transport)
                sftp = paramiko.SFTPClient.from_transport(transport)
                if sftp is None:
                    raise TransientError("the server did not open an SFTP session")
                sftp.get_channel().settimeout(endpoint.timeout)
        except BaseException:
            _close_transport(transport)
            raise
        self._transport, self._sftp = transport, sftp
        log.debug("connected", extra={"destination": endpoint.display, "fingerprint": self._fingerprint})

    def _handshake(self, pinned: set[tuple[str, bytes]]) -> tuple[paramiko.Transport, paramiko.PKey]:
        """Open the SSH connection up to key exchange; return it with the server's host key."""
        endpoint = self.endpoint
        with map_errors(endpoint):
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=endpoint.timeout)
            # the last packet of a file must not wait for an ack of the one before (Nagle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport: paramiko.Transport | None = None
        try:
            with map_errors(endpoint):
                transport = paramiko.Transport(sock)
                transport.banner_timeout = endpoint.timeout
                transport.handshake_timeout = endpoint.timeout
                transport.auth_timeout = endpoint.timeout
                self._restrict_key_types(transport, pinned)
                self._prefer_gcm(transport)
                try:
                    transport.start_client(timeout=endpoint.timeout)
                except paramiko.IncompatiblePeer as exc:
                    if pinned and "host key" in str(exc):
                        raise _NoPinnedKeyType from exc
                    raise
                if not transport.is_active() or transport.host_key is None:
                    # start_client returns quietly when its timeout expires mid-handshake.
                    raise TransientError(f"timed out after {endpoint.timeout:g} s during the SSH handshake")
                key = transport.get_remote_server_key()
        except BaseException:
            if transport is not None:
                _close_transport(transport)
            sock.close()
            raise
        self._fingerprint = fingerprint(key)
        self.server_key_line = public_key_line(key)
        return transport, key

    def _pinned_keys(self) -> set[tuple[str, bytes]]:
        """The accepted ``(type, blob)`` pairs from ``host_keys`` and ``known_hosts``."""
        endpoint = self.endpoint
        pinned: set[tuple[str, bytes]] = set()
        for line in endpoint.host_keys:
            try:
                pinned.add(parse_host_key(line))
            except ValueError as exc:
                raise HostKeyError(f"host_key {line[:40]!r}...: {exc}", destination=endpoint.display) from exc
        if endpoint.known_hosts is not None:
            try:
                known = paramiko.HostKeys(str(endpoint.known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                reason = getattr(exc, "strerror", None) or exc
                raise HostKeyError(
                    f"cannot read known_hosts file {endpoint.known_hosts}: {reason}",
                    destination=endpoint.display,
                ) from exc
            # OpenSSH writes "[host]:port" for ports other than 22; a bare host entry is accepted too.
            for name in (endpoint.host, f"[{endpoint.host}]:{endpoint.port}"):
                for key in (known.lookup(name) or {}).values():
                    pinned.add((key.get_name(), key.asbytes()))
        return pinned

    @staticmethod
    def _prefer_gcm(transport: paramiko.Transport) -> None:
        """AES-GCM first: one authenticated encryption per packet instead of AES-CTR plus an HMAC
        computed apart (+15-40 % on uploads). Only an order of preference: servers without it
        negotiate the next cipher."""
        options = transport.get_security_options()
        options.ciphers = tuple(sorted(options.ciphers, key=lambda name: "-gcm@" not in name))

    @staticmethod
    def _restrict_key_types(transport: paramiko.Transport, pinned: set[tuple[str, bytes]]) -> None:
        """Negotiate only host key types we have pinned, so a server with several keys shows a pinned one."""
        if not pinned:
            return
        options = transport.get_security_options()
        wanted: list[str] = []
        for key_type, _ in sorted(pinned):
            wanted.extend(_ALGORITHMS_FOR_KEY_TYPE.get(key_type, (key_type,)))
        supported = [name for name in dict.fromkeys(wanted) if name in options.key_types]
        if supported:
            options.key_types = supported

    def _verify(self, key: paramiko.PKey, pinned: set[tuple[str, bytes]]) -> None:
        offered = (key.get_name(), key.asbytes())
        if offered in pinned:
            return
        endpoint = self.endpoint
        if not pinned:
            if endpoint.known_hosts is None:
                where = "in host_key or known_hosts"
            else:
                where = f"for {endpoint.host} in {endpoint.known_hosts}"
            raise HostKeyError(
                f"refusing to connect: no host key pinned {where}; the server offers "
                f"{key.get_name()} key {self._fingerprint}",
                hint=f"after checking this fingerprint with the server's operator, pin it with "
                f'host_key: "{public_key_line(key)}"',
            )
        raise HostKeyError(
            f"the server's host key {key.get_name()} {self._fingerprint} is not the pinned one",
            hint=REPIN_WARNING,
        )

    def _authenticate(self, transport: paramiko.Transport) -> None:
        endpoint = self.endpoint
        key = self._private_key()
        if key is not None:
            transport.auth_publickey(endpoint.username, key)
        elif endpoint.password is not None:
            # fallback=True also answers a keyboard-interactive prompt with the password (PAM servers).
            transport.auth_password(endpoint.username, endpoint.password.get_secret_value())
        else:
            raise AuthenticationError("no password, key_file or private_key configured")
        if not transport.is_authenticated():
            raise AuthenticationError("login refused: the server wants more authentication steps")

    def _private_key(self) -> paramiko.PKey | None:
        endpoint = self.endpoint
        passphrase = endpoint.key_passphrase.get_secret_value() if endpoint.key_passphrase else None
        try:
            if endpoint.key_file is not None:
                return paramiko.PKey.from_path(Path(endpoint.key_file), password=passphrase)
            if endpoint.private_key is not None:
                return _load_private_key(endpoint.private_key.get_secret_value().encode(), passphrase)
        except (OSError, ValueError, TypeError, paramiko.SSHException, paramiko.UnknownKeyType) as exc:
            # Name the file and the kind of failure only: exception texts may quote key material.
            source = f"key_file {endpoint.key_file}" if endpoint.key_file else "private_key"
            text = str(exc).lower()
            if isinstance(exc, OSError) and exc.strerror:
                reason = exc.strerror
            elif isinstance(exc, paramiko.PasswordRequiredException) or any(
                word in text for word in ("password", "encrypted", "decrypt")
            ):
                reason = "wrong or missing key_passphrase"
            else:
                reason = f"unreadable key ({type(exc).__name__})"

            raise AuthenticationError(
                f"cannot load {source}: {reason}",
                hint="it must be an OpenSSH or PEM private key (ed25519, ecdsa or rsa)",
            ) from None
        return None

    def close(self) -> None:
        """Close the SFTP session and the SSH connection; never raises."""
        sftp, self._sftp = self._sftp, None
        transport, self._transport = self._transport, None
        try:
            if sftp is not None:
                sftp.close()
        except Exception as exc:  # a dead connection is what we are closing anyway
            log.debug("closing the SFTP session failed: %r", exc)
        if transport is not None:
            _close_transport(transport)

    def alive(self) -> bool:
        """The SSH connection is up and the SFTP session answers a request."""
        if self._sftp is None or self._transport is None or not self._transport.is_active():
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

    # --- file operations

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its missing parents."""
        sftp = self.sftp
        for prefix in path_prefixes(path):
            if prefix in self._dirs:
                continue
            with map_errors(self.endpoint, prefix):
                mode = self._mode(prefix)
                if mode is None:
                    try:
                        sftp.mkdir(prefix)
                    except OSError:
                        # Another connection may have created it meanwhile.
                        mode = self._mode(prefix)
                        if mode is None or not stat.S_ISDIR(mode):
                            raise
                elif not stat.S_ISDIR(mode):
                    raise PermanentError("cannot create the directory: a file has this name")
            self._dirs.add(prefix)

    def _mode(self, path: str) -> int | None:
        try:
            return self.sftp.stat(path).st_mode
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    def size(self, path: str) -> int | None:
        """The size of file ``path``; None when there is no such file."""
        with map_errors(self.endpoint, path):
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
        """Write ``stream`` to ``path`` with pipelined writes, each one acknowledged; return the bytes sent."""
        sent = 0
        with map_errors(self.endpoint, path, writing=True), self.sftp.open(path, "wb") as remote:
            writer = _AckedWriter(self.sftp, remote.handle)
            while chunk := stream.read(CHUNK_SIZE):
                writer.write(chunk)
                sent += len(chunk)
                if callback is not None:
                    callback(len(chunk))
            writer.finish()
        return sent

    def rename(self, source: str, target: str) -> None:
        """Rename with replace (posix-rename@openssh.com), else delete ``target`` and rename."""
        with map_errors(self.endpoint, target):
            try:
                self.sftp.posix_rename(source, target)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise
                # Servers without the OpenSSH extension: plain SFTP rename never replaces.
                log.debug("posix-rename refused (%s); deleting the target first", exc, extra={"remote_path": target})
                self.remove(target)
                self.sftp.rename(source, target)

    def remove(self, path: str) -> None:
        """Delete file ``path``; a missing file is fine."""
        with map_errors(self.endpoint, path):
            try:
                self.sftp.remove(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise

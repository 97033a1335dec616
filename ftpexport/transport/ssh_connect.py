"""Opening an SSH connection for the SFTP transport: the TCP connection, the key exchange under
ftpexport's algorithm policy, the server's host key, and the login (key or password).

``handshake`` stops after the key exchange, so that the caller can check the host key against the
pinned ones before anything is sent; ``authenticate`` logs in once it has. Both record what they
do in the attempt's transcript (the banner, host key, algorithms, how it logs in; never a secret).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass

import paramiko

from ..errors import (
    TOO_MANY_HINT,
    AuthenticationError,
    TooManySessionsError,
    TransientError,
    TransportError,
    printable,
)
from . import transcript, wire
from .base import Endpoint
from .sftp_errors import map_errors
from .ssh_host_keys import fingerprint, public_key_line, restrict_key_types
from .ssh_negotiation import PolicyTransport, apply_policy, mismatch_error, negotiated
from .ssh_private_keys import private_key

log = logging.getLogger(__name__)


class NoPinnedKeyType(Exception):
    """The server offers no host key of the pinned types (raised by ``handshake`` only)."""


@dataclass
class Handshake:
    """An SSH connection after its key exchange, not logged in yet, and what it showed of the server."""

    transport: paramiko.Transport
    key: paramiko.PKey
    #: ``SHA256:...`` of ``key``
    fingerprint: str
    #: ``key`` as a ``host_key`` line
    key_line: str
    #: what the key exchange agreed on: ``kex``, ``host_key``, ``cipher``, ``mac``
    algorithms: dict[str, str]


#: SSH_DISCONNECT_TOO_MANY_CONNECTIONS (RFC 4253, 11.1): the server takes no more sessions now
TOO_MANY_CONNECTIONS = 12
#: seconds a refused login waits for the server's disconnect, if it sends one (``disconnect_error``)
DISCONNECT_WAIT = 0.5
#: the reason codes of SSH_MSG_DISCONNECT (RFC 4253, 11.1), as the error names them
DISCONNECT_REASONS = {
    1: "host not allowed to connect", 2: "protocol error", 3: "key exchange failed", 4: "reserved",
    5: "MAC error", 6: "compression error", 7: "service not available", 8: "protocol version not supported",
    9: "host key not verifiable", 10: "connection lost", 11: "by application", 12: "too many connections",
    13: "authentication cancelled by user", 14: "no more authentication methods available",
    15: "illegal user name",
}  # fmt: skip


def disconnect_error(endpoint: Endpoint, transport: paramiko.Transport, exc: BaseException) -> TransportError | None:
    """The error to raise instead of ``exc`` when the server disconnected ``transport`` saying why;
    None when it did not, or ``exc`` is not ours to explain (the caller re-raises ``exc``).

    Reason 12 (too many connections, as ProFTPD's ``MaxClientsPerUser`` and most commercial servers
    send it) is ``TooManySessionsError``: the pool retries on fewer sessions. Any other reason keeps
    the error it caused (a refused login, a cut connection) and adds the server's words, which
    paramiko only logs (a banned address, a locked account, too many login attempts)."""
    if isinstance(exc, AuthenticationError) and getattr(transport, "disconnect", None) is None:
        # a server that ends the session sends its disconnect right after the refusal, which
        # paramiko raised as soon as it read it: give the disconnect a moment to arrive
        with contextlib.suppress(RuntimeError):
            transport.join(min(DISCONNECT_WAIT, endpoint.timeout))
    disconnect: tuple[int, str] | None = getattr(transport, "disconnect", None)
    if disconnect is None:  # closed without a word
        return None
    code, text = disconnect
    text = printable(" ".join(text.split()))[:200] or "no reason given"  # the server's words: one line, bounded
    said = f"{text} (SSH disconnect, reason {code}: {DISCONNECT_REASONS.get(code, 'unknown')})"
    transcript.note("error", f"the server disconnected: {said}")
    if code == TOO_MANY_CONNECTIONS:
        return TooManySessionsError(
            f"the server refused one more session: {said}", destination=endpoint.display, hint=TOO_MANY_HINT
        )
    if not isinstance(exc, TransportError):
        return None
    exc.detail = exc.message = f"{exc.detail}; the server disconnected: {said}"
    return exc


def close_ssh(transport: paramiko.Transport) -> None:
    """Close an SSH connection and its threads; never raises."""
    try:
        transport.close()
    except Exception as exc:
        log.debug("closing the SSH connection failed: %r", exc)
    # paramiko leaves its handshake timer thread running when the handshake failed; cancel it.
    transport.packetizer.complete_handshake()


def handshake(endpoint: Endpoint, pinned: set[tuple[str, bytes]]) -> Handshake:
    """Open the SSH connection up to key exchange, offering only host keys of the ``pinned`` types
    (any when empty); ``NoPinnedKeyType`` when the server has none of them."""
    with map_errors(endpoint, phase="connect"):
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=endpoint.timeout)
        # the last packet of a file must not wait for an ack of the one before (Nagle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport: paramiko.Transport | None = None
    try:
        with map_errors(endpoint, phase="ssh"):
            # the socket recognises an FTP greeting or an HTTP answer at once (paramiko would
            # wait for an SSH banner until its timeout)
            transport = PolicyTransport(wire.SniffingSocket(sock, endpoint.host, endpoint.port))  # type: ignore[arg-type]
            transport.banner_timeout = endpoint.timeout
            transport.handshake_timeout = endpoint.timeout
            transport.auth_timeout = endpoint.timeout
            apply_policy(transport, endpoint.ssh_legacy_algorithms)
            restrict_key_types(transport, pinned)
            try:
                transport.start_client(timeout=endpoint.timeout)
            except paramiko.IncompatiblePeer as exc:
                if pinned and "host key" in str(exc):
                    raise NoPinnedKeyType from exc
                raise mismatch_error(transport, endpoint, exc) from exc
            if not transport.is_active() or transport.host_key is None:
                # start_client returns quietly when its timeout expires mid-handshake.
                raise TransientError(wire.timed_out(endpoint.host, endpoint.port, "ssh", endpoint.timeout))
            key = transport.get_remote_server_key()
    except BaseException as exc:
        said = None if transport is None else disconnect_error(endpoint, transport, exc)
        if transport is not None:
            close_ssh(transport)
        sock.close()
        if said is not None and said is not exc:
            raise said from exc
        raise
    shaken = Handshake(transport, key, fingerprint(key), public_key_line(key), negotiated(transport))
    transcript.note(
        "info",
        f"server banner {transport.remote_version}; host key {key.get_name()} "
        f"{shaken.fingerprint}; " + ", ".join(f"{k} {v}" for k, v in shaken.algorithms.items()),
    )
    return shaken


def authenticate(endpoint: Endpoint, transport: paramiko.Transport) -> None:
    """Log in with the endpoint's key, else its password."""
    key = private_key(endpoint)
    transcript.note(
        "info",
        f"authenticating as {endpoint.username} with "
        + (f"a {key.get_name()} key" if key is not None else "a password"),
    )
    if key is not None:
        transport.auth_publickey(endpoint.username, key)
    elif endpoint.password is not None:
        # fallback=True also answers a keyboard-interactive prompt with the password (PAM servers).
        transport.auth_password(endpoint.username, endpoint.password.get_secret_value())
    else:
        raise AuthenticationError("no password, key_file or private_key configured")
    if not transport.is_authenticated():
        raise AuthenticationError("login refused: the server wants more authentication steps")

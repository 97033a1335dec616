"""Opening an SSH connection for the SFTP transport: the TCP connection, the key exchange under
ftpexport's algorithm policy, the server's host key, and the login (key or password).

``handshake`` stops after the key exchange, so that the caller can check the host key against the
pinned ones before anything is sent; ``authenticate`` logs in once it has. Both record what they
do in the attempt's transcript (the banner, host key, algorithms, how it logs in; never a secret).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import paramiko

from ..errors import TOO_MANY_HINT, AuthenticationError, TooManySessionsError, TransientError
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


def sessions_refused(endpoint: Endpoint, transport: paramiko.Transport) -> TooManySessionsError | None:
    """The error to raise when the server disconnected ``transport`` because it takes no more sessions
    (reason 12, as ProFTPD's ``MaxClientsPerUser`` and most commercial servers send it); None otherwise."""
    code, text = getattr(transport, "disconnect", None) or (0, "")
    if code != TOO_MANY_CONNECTIONS:
        return None
    text = " ".join(text.split())[:200] or "no reason given"  # the server's words: one line, bounded
    transcript.note("error", f"the server disconnected: {text} (reason {code}: too many connections)")
    return TooManySessionsError(
        f"the server refused one more session: {text} (SSH disconnect, reason {code}: too many connections)",
        destination=endpoint.display,
        hint=TOO_MANY_HINT,
    )


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
        refused = None if transport is None else sessions_refused(endpoint, transport)
        if transport is not None:
            close_ssh(transport)
        sock.close()
        if refused is not None:
            raise refused from exc
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

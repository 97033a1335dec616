"""Network failures in words: which server (host:port), in which phase, and what it speaks instead.

Every "connection refused", "timed out", "reset" or "closed" message names ``host:port`` and the
phase of the conversation (connect, TLS handshake, SSH handshake, login, transfer, rename...), so an
operator knows where to look. A server that answers in another protocol (an SSH banner on an FTP
port, an FTP greeting on an SFTP port, an HTTP answer) is recognised from its first bytes and
reported at once as a permanent error, instead of waiting for timeouts.
"""

from __future__ import annotations

import contextlib
import re
import socket
from typing import Any

from ..errors import PermanentError

#: phase -> how a message says when it happened
PHASES: dict[str, str] = {
    "connect": "while connecting",
    "greeting": "before the FTP greeting",
    "tls": "during the TLS handshake",
    "ssh": "during the SSH handshake",
    "login": "during login",
    "folder": "while creating folders",
    "transfer": "during the transfer",
    "size": "during the size check",
    "rename": "during the rename",
    "delete": "while deleting",
}

#: the schemes to suggest for a server that speaks a protocol
_USE = {
    "SSH": "use sftp://",
    "FTP": "use ftp:// or ftps:// for this port, or the port of the SFTP server",
    "HTTP": "this is a web server: check the port",
    "TLS": "this port expects TLS first: implicit FTPS (ftps+implicit://) or HTTPS; check the scheme and the port",
}

#: how long a diagnostic connection waits for a server's first bytes
SNIFF_TIMEOUT = 3.0

_FTP_REPLY = re.compile(rb"^[1-5][0-9][0-9][ -]")


def address(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def when(phase: str) -> str:
    """The words for ``phase`` (``"during the transfer"``); an unknown phase is used as it is."""
    return PHASES.get(phase, phase)


def refused(host: str, port: int, phase: str) -> str:
    return f"connection refused by {address(host, port)} {when(phase)}: is the server running on this port?"


def timed_out(host: str, port: int, phase: str, seconds: float) -> str:
    return f"timed out after {seconds:g} s: no answer from {address(host, port)} {when(phase)}"


def reset(host: str, port: int, phase: str) -> str:
    return f"connection reset by {address(host, port)} {when(phase)}"


def closed(host: str, port: int, phase: str, what: str = "connection") -> str:
    return f"the server at {address(host, port)} closed the {what} {when(phase)}"


def network_error(host: str, port: int, phase: str, exc: OSError) -> str:
    """A message for an ``OSError`` on the wire: refused, reset, closed or another error."""
    if isinstance(exc, ConnectionRefusedError):
        return refused(host, port, phase)
    if isinstance(exc, ConnectionResetError):
        return reset(host, port, phase)
    if isinstance(exc, BrokenPipeError | ConnectionAbortedError):
        return closed(host, port, phase)
    return f"network error with {address(host, port)} {when(phase)}: {exc.strerror or exc}"


def recognise(first: bytes) -> str | None:
    """The protocol a server's first bytes belong to: ``SSH``, ``FTP``, ``HTTP``, ``TLS``; None if unknown."""
    if first.startswith(b"SSH-"):
        return "SSH"
    if first.startswith(b"HTTP/"):
        return "HTTP"
    if _FTP_REPLY.match(first):
        return "FTP"
    if len(first) >= 2 and first[0] in (0x15, 0x16) and first[1] == 0x03:
        return "TLS"  # a TLS alert or handshake record
    return None


def _quote(first: bytes) -> str:
    line = first.split(b"\n", 1)[0].strip()[:60]
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in line)
    return f': it answered "{text}"' if text and recognise(first) != "TLS" else ""


def other_protocol(
    host: str, port: int, expected: str, first: bytes, error: type[PermanentError] = PermanentError
) -> PermanentError | None:
    """The ``error`` for a server that answered ``first`` when ``expected`` (``SSH``, ``FTP``, ``FTPS``)
    was wanted; None when ``first`` is no other protocol we know (or is the expected one)."""
    protocol = recognise(first)
    if protocol is None or protocol == expected or (protocol == "TLS" and expected == "FTPS"):
        return None
    if protocol == "FTP" and expected == "FTPS":
        return error(
            f"the server at {address(host, port)} speaks plain FTP first, not implicit FTPS{_quote(first)}",
            hint="use ftps:// (explicit TLS, AUTH TLS) for this port",
        )
    return error(
        f"the server at {address(host, port)} speaks {protocol}, not {expected}{_quote(first)}",
        hint=_USE[protocol],
    )


def first_bytes(host: str, port: int, timeout: float = SNIFF_TIMEOUT) -> bytes:
    """What a server says first on a new connection, within ``timeout`` (b"" if nothing or no connection).

    Only for diagnosing a failed handshake: servers of SSH and FTP greet at once, TLS servers say
    nothing until the client speaks.
    """
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout) as sock:
        return sock.recv(256)
    return b""


class SniffingSocket:
    """A socket handed to the SSH library that checks the server's first bytes for another protocol.

    paramiko waits for an ``SSH-`` line and skips other lines until its banner timeout: an FTP
    greeting cost ``timeout`` seconds per attempt. Here the first bytes are checked as they arrive;
    another protocol raises a ``PermanentError`` at once (paramiko wraps it in its banner error, whose
    context it stays). Everything else is the socket's own.
    """

    def __init__(self, sock: socket.socket, host: str, port: int) -> None:
        self._sock = sock
        self._host = host
        self._port = port
        self._first = b""
        self._checked = False

    def recv(self, size: int, *flags: int) -> bytes:
        data = self._sock.recv(size, *flags)
        if not self._checked:
            self._first += data
            if not data or len(self._first) >= 4 or b"\n" in self._first:
                self._checked = True
                error = other_protocol(self._host, self._port, "SSH", self._first)
                if error is not None:
                    raise error
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

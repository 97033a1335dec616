"""Our paramiko SFTP client: what an SFTP server says of itself (its version packet's extensions,
and limits@openssh.com), and packets written without copies.

paramiko reads the server's version packet when the session opens and drops the extensions it
lists; ``SFTPClient`` keeps them (no extra round trip). ``limits`` asks limits@openssh.com (one
round trip) when the server lists it.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY, CMD_INIT, CMD_VERSION, SFTPError

from .capabilities import ServerCapabilities

log = logging.getLogger(__name__)

LIMITS = "limits@openssh.com"
#: the four numbers of a limits@openssh.com reply, in order
LIMIT_NAMES = ("max_packet_length", "max_read_length", "max_write_length", "max_open_handles")


class SFTPClient(paramiko.SFTPClient):
    """paramiko's client that keeps the server's protocol version and extensions (name -> data)."""

    server_version: int | None = None
    extensions: dict[str, str]

    def _write_all(self, out: bytes) -> None:
        """Send one SFTP packet on the channel, as paramiko does, but without copying what is left
        after each partial send: paramiko's ``out = out[n:]`` copies the rest of a 255 KiB write
        request for every SSH packet it fills (about 4 copies of each byte)."""
        view = memoryview(out)
        while view:
            n = self.sock.send(view)  # type: ignore[attr-defined]
            if n <= 0:
                raise EOFError()
            view = view[n:]

    def _send_version(self) -> int:
        message = paramiko.Message()
        message.add_int(3)
        self._send_packet(CMD_INIT, message)  # type: ignore[attr-defined]
        kind, data = self._read_packet()  # type: ignore[attr-defined]
        if kind != CMD_VERSION:
            raise SFTPError("Incompatible sftp protocol")
        self.server_version = struct.unpack(">I", data[:4])[0]
        self.extensions = _extensions(data[4:])
        return self.server_version

    def capabilities(self, banner: str | None) -> ServerCapabilities:
        """The SFTP version and extensions and, when listed, the limits (one round trip), with ``banner``."""
        learned = ServerCapabilities(protocol="sftp", banner=banner)
        learned.learned_from_extensions(self.server_version or 3, getattr(self, "extensions", {}))
        try:
            learned.limits = self.limits()
        except OSError as exc:
            log.debug("the server did not answer limits@openssh.com: %r", exc)
        return learned

    def limits(self) -> dict[str, int] | None:
        """The server's limits (limits@openssh.com), or None when it lists no such extension."""
        if LIMITS not in getattr(self, "extensions", {}):
            return None
        kind, reply = self._request(CMD_EXTENDED, LIMITS)  # type: ignore[attr-defined]
        if kind != CMD_EXTENDED_REPLY:
            return None
        return {name: reply.get_int64() for name in LIMIT_NAMES}


def _extensions(data: bytes) -> dict[str, str]:
    """The (name, data) string pairs that follow the version number; a malformed tail is dropped."""
    found: dict[str, Any] = {}
    offset = 0
    try:
        while offset < len(data):
            name, offset = _string(data, offset)
            value, offset = _string(data, offset)
            found[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    except (struct.error, ValueError) as exc:
        log.debug("the server's SFTP extensions could not all be read: %r", exc)
    return found


def _string(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack(">I", data[offset : offset + 4])
    start = offset + 4
    if start + length > len(data):
        raise ValueError("a string runs past the packet")
    return data[start : start + length], start + length

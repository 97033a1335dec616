"""An upload's bytes on an FTP data connection: ``sendfile`` for a regular file, or a zip's images,
on plain FTP, else blocks through one reused buffer; the progress callback once per block.
"""

from __future__ import annotations

import io
import os
import socket
import ssl
import stat
from collections.abc import Callable
from typing import BinaryIO

from . import transcript
from .sendfile import send_file

#: bytes read from the source and sent per block (and per progress callback)
BLOCK_SIZE = 256 * 1024


def send_stream(conn: socket.socket, stream: BinaryIO, callback: Callable[[int], None] | None) -> int:
    """Send ``stream`` from where it is to its end over ``conn``; the bytes sent (and the attempt's
    transcript is told how many, also when the connection breaks half way)."""
    if transcript.current() is None:
        return _send(conn, stream, callback)
    sent = [0]

    def counted(n: int) -> None:
        sent[0] += n
        if callback is not None:
            callback(n)

    try:
        total = _send(conn, stream, counted)
    except OSError as exc:
        transcript.note("data", f"{sent[0]} bytes sent on the data connection, then: {exc.strerror or exc}")
        raise
    transcript.note("data", f"{total} bytes sent on the data connection")
    return total


def _send(conn: socket.socket, stream: BinaryIO, callback: Callable[[int], None] | None) -> int:
    """``send_stream`` itself.

    A regular file on a plain socket goes out with ``sendfile`` (no copy through Python), and so
    does a stream that can send itself that way (``send_to(conn, callback, block)``: the zip read
    from a record's images, ``zipstream.ZipStream``); else blocks are read into one buffer and sent
    from a view of it, with no new bytes per block.
    """
    plain = not isinstance(conn, ssl.SSLSocket)
    send_to = getattr(stream, "send_to", None) if plain else None
    if send_to is not None:
        return int(send_to(conn, callback, BLOCK_SIZE))
    fileno = _regular_fileno(stream)
    if fileno is not None and plain:
        offset = stream.tell()
        sent = send_file(conn, fileno, offset, None, callback, BLOCK_SIZE)
        stream.seek(offset + sent)  # past what was sent, as if read
        return sent
    buffer = bytearray(BLOCK_SIZE)
    view = memoryview(buffer)
    sent = 0
    readinto = getattr(stream, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(view)
            block = view[:n] if n else b""
        else:
            block = stream.read(BLOCK_SIZE)
            n = len(block)
        if not n:
            return sent
        conn.sendall(block)
        sent += n
        if callback is not None:
            callback(n)


def _regular_fileno(stream: BinaryIO) -> int | None:
    """The file descriptor of ``stream`` if it is a regular file, else None."""
    try:
        fileno = stream.fileno()
        return fileno if stat.S_ISREG(os.fstat(fileno).st_mode) else None
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None

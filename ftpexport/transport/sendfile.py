"""A file's bytes to a socket with ``os.sendfile``: no copy through Python.

``socket.sendfile`` does the same, but sets itself up again on every call: an ``fstat`` of the
file, a new selector, and a ``seek`` after. An upload calls it for each 256 KiB block of a loose
file and for each image of a streamed zip (hundreds of calls a record), so ``send_file`` keeps one
poll object for the whole send and calls ``os.sendfile`` directly.

It waits for the socket as the socket's timeout says (``TimeoutError('timed out')`` when a wait
for room to send outlasts it, as ``socket.sendfile`` raises), and falls back to reading and
sending when the kernel cannot ``sendfile`` from that file, as ``socket.sendfile`` does.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Callable

#: returned by ``os.sendfile`` for a file or socket it cannot send from or to: read and send instead
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOTSOCK, errno.EOVERFLOW}


def send_file(
    conn: socket.socket,
    fd: int,
    offset: int,
    count: int | None,
    callback: Callable[[int], None] | None,
    block: int,
) -> int:
    """Send ``count`` bytes of the file ``fd`` from ``offset`` (None: to its end) over ``conn``, in
    pieces of at most ``block`` bytes (``callback`` told each one's size); the bytes sent, fewer
    than ``count`` only when the file ends first. The file's position is not used or moved."""
    out = conn.fileno()
    timeout = conn.gettimeout()
    poller: select.poll | None = None
    sent = 0
    while count is None or sent < count:
        want = block if count is None else min(block, count - sent)
        try:
            n = os.sendfile(out, fd, offset + sent, want)
        except BlockingIOError:  # the socket has a timeout, so it does not block: wait for room
            if poller is None:
                poller = select.poll()
                poller.register(out, select.POLLOUT)
            if not poller.poll(None if timeout is None else timeout * 1000):
                raise TimeoutError("timed out") from None
            continue
        except OSError as exc:
            if sent or exc.errno not in _UNSUPPORTED:
                raise
            return _read_and_send(conn, fd, offset, count, callback, block)
        if not n:
            break
        sent += n
        if callback is not None:
            callback(n)
    return sent


def _read_and_send(
    conn: socket.socket, fd: int, offset: int, count: int | None, callback: Callable[[int], None] | None, block: int
) -> int:
    """``send_file`` where the kernel cannot: ``pread`` and ``sendall``."""
    sent = 0
    while count is None or sent < count:
        data = os.pread(fd, block if count is None else min(block, count - sent), offset + sent)
        if not data:
            break
        conn.sendall(data)
        sent += len(data)
        if callback is not None:
            callback(len(data))
    return sent

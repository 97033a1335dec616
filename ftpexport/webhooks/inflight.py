"""The webhook requests under way (``Inflight``), to cut the overdue ones and all of them when the
notifier closes; ``Interrupted``, the error of a request cut by closing.

Apart from client.py so that the notifier has them without importing the HTTPS client
(``http.client``, ssl contexts), which it needs only once there is something to send.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from ..errors import TransientError


class Inflight:
    """The sockets of the requests under way, to cut the overdue ones and every one at ``close``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[int, tuple[socket.socket, float]] = {}
        self._cut: set[int] = set()
        self._next = 0
        #: cut() without a deadline was called: no new connection
        self._closed = False

    def add(self, sock: socket.socket, deadline: float) -> int:
        with self._lock:
            if self._closed:
                raise OSError("ftpexport is stopping")
            self._next += 1
            self._sockets[self._next] = (sock, deadline)
            return self._next

    def replace(self, token: int, sock: socket.socket) -> None:
        with self._lock:
            if token in self._sockets:
                self._sockets[token] = (sock, self._sockets[token][1])

    def done(self, token: int | None) -> bool:
        """Forget a socket; True when it was cut (overdue or closing)."""
        with self._lock:
            self._sockets.pop(token or 0, None)
            cut = (token or 0) in self._cut
            self._cut.discard(token or 0)
            return cut

    def cut(self, *, overdue_at: float | None = None) -> float | None:
        """Cut every socket (or the ones past their deadline at ``overdue_at``); returns the next deadline."""
        with self._lock:
            self._closed = self._closed or overdue_at is None
            victims = [
                (token, sock)
                for token, (sock, deadline) in self._sockets.items()
                if overdue_at is None or deadline <= overdue_at
            ]
            self._cut.update(token for token, _ in victims)
            remaining = [deadline for token, (_, deadline) in self._sockets.items() if token not in self._cut]
        for _, sock in victims:
            with contextlib.suppress(OSError):  # closed already
                # the plain socket's shutdown, also for a TLS socket: the thread reading it gets an error at once
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        return min(remaining, default=None)


class Interrupted(TransientError):
    """A request cut by ``close``: it stays pending, due at once, without using up an attempt's budget."""

"""HTTP clients that misbehave on purpose, for the tests of the metrics server.

``BadClients(host, port)`` opens connections that connect and say nothing, send half a request,
send a request one byte a second for ever, or send a request and never read the answer. Each
connection is opened before its method returns (the server has it in its accept queue); ``close``
stops the dripping thread and closes every socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

#: a request line and the start of its headers, without the blank line that ends them
HALF_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"


class BadClients:
    """Connections to ``host:port`` that hold a server's threads if it lets them."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _connect(self, *, receive_buffer: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting: the window the server sees is small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(10)
        sock.connect((self.host, self.port))
        self.sockets.append(sock)
        return sock

    def silent(self, count: int = 1) -> list[socket.socket]:
        """Connect and send nothing."""
        return [self._connect() for _ in range(count)]

    def half_request(self) -> socket.socket:
        """A request line and a header, then nothing: the server waits for the end of the headers."""
        sock = self._connect()
        sock.sendall(HALF_REQUEST)
        return sock

    def dripping(self, every: float = 1.0) -> socket.socket:
        """Half a request, then one byte of a header every ``every`` seconds until ``close``."""
        sock = self._connect()
        sock.sendall(HALF_REQUEST + b"X-Slow: ")

        def drip() -> None:
            while not self._stop.wait(every):  # the client's pace, not a wait for the server
                try:
                    sock.sendall(b"a")
                except OSError:
                    return  # the server cut it

        thread = threading.Thread(target=drip, name="test-dripping-client", daemon=True)
        thread.start()
        self._threads.append(thread)
        return sock

    def never_reading(self) -> socket.socket:
        """A whole request for /metrics, and the answer is never read (a small receive window)."""
        sock = self._connect(receive_buffer=1024)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        return sock

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> BadClients:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed or reset ``sock`` (what it sent before is read and dropped)."""
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True  # reset
    return True

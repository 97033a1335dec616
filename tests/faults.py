"""A small TCP fault-injection proxy for fault tests against the real servers on 127.0.0.1.

``FaultProxy(host, port)`` listens on 127.0.0.1 and forwards every accepted connection to the target.
A fault mode (``passthrough``, ``blackhole``, ``cut_after``, ``delay``, ``throttle``) can be switched
at any time from the test thread; each mode replaces the previous one and applies to connections
accepted afterwards. ``cut_all`` aborts (RST) the connections open right now.

Threads: one accept thread, and per connection two pump threads (one per direction) or, when
blackholed, one reader thread. Every socket is blocking with a short timeout, so ``stop()`` wakes
every thread and joins it within about a second. A connection's sockets are closed by the last of
its threads to finish, never under a thread still using them.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

HOST = "127.0.0.1"
#: how long a blocking socket call waits before a thread checks whether it should stop
POLL = 0.05
#: the largest chunk read at once
CHUNK = 65536
#: the longest stop() and cut_all() wait for threads to finish
JOIN_TIMEOUT = 2.0
UP = "up"  # client -> server
DOWN = "down"  # server -> client


def closed_port() -> int:
    """A loopback port on which nothing listens: connecting to it gets ECONNREFUSED."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _hard_close(sock: socket.socket) -> None:
    """Close ``sock`` abortively: SO_LINGER 0 makes the kernel send RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass(frozen=True)
class _Mode:
    """The fault mode a connection got when it was accepted."""

    blackhole: bool = False
    cut_after: int | None = None
    cut_direction: str = UP
    delay: float = 0.0
    rate: int | None = None  # bytes per second per direction

    @property
    def chunk(self) -> int:
        # Throttled: small chunks (about 1/20 s worth each) so the rate is smooth.
        return max(1, min(CHUNK, self.rate // 20)) if self.rate else CHUNK


class _Connection:
    """One accepted client connection and, unless blackholed, its upstream connection."""

    def __init__(self, proxy: FaultProxy, number: int, client: socket.socket, mode: _Mode) -> None:
        self.proxy = proxy
        self.number = number
        self.client = client
        self.upstream: socket.socket | None = None
        self.mode = mode
        #: set to make every thread of this connection finish; the sockets are then closed with RST
        self.aborting = threading.Event()
        #: set once the sockets are closed
        self.closed = threading.Event()
        self.sent = {UP: 0, DOWN: 0}
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running = 0

    def start(self) -> list[threading.Thread]:
        """Connect upstream (unless blackholed) and start this connection's threads."""
        self.client.settimeout(POLL)
        if self.mode.blackhole:
            targets = [(self._swallow, "blackhole")]
        else:
            try:
                self.upstream = socket.create_connection(
                    (self.proxy.target_host, self.proxy.target_port), timeout=JOIN_TIMEOUT
                )
            except OSError:
                # The target is down: the client sees its connection reset, as through a real proxy.
                _hard_close(self.client)
                self.closed.set()
                return []
            upstream = self.upstream
            upstream.settimeout(POLL)
            targets = [
                (lambda: self._pump(self.client, upstream, UP), UP),
                (lambda: self._pump(upstream, self.client, DOWN), DOWN),
            ]
        self._running = len(targets)
        for target, label in targets:
            thread = threading.Thread(
                target=self._run,
                args=(target,),
                name=f"fault-proxy-{self.proxy.port}-conn{self.number}-{label}",
                daemon=True,
            )
            self.threads.append(thread)
        for thread in self.threads:
            thread.start()
        return self.threads

    def abort(self) -> None:
        """Ask the threads to finish; the last one closes both sockets with RST."""
        self.aborting.set()

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except OSError:
            self.abort()
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                self._close()

    def _close(self) -> None:
        # Cut, reset or stopped: RST. Both sides closed normally (EOF each way): FIN.
        close = _hard_close if self._stopping() else socket.socket.close
        for sock in (self.client, self.upstream):
            if sock is not None:
                close(sock)
        self.closed.set()

    def _stopping(self) -> bool:
        return self.aborting.is_set() or self.proxy._stopping.is_set()

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (monotonic); False if the connection is aborted meanwhile."""
        while (remaining := deadline - time.monotonic()) > 0:
            if self.aborting.wait(min(remaining, POLL)) or self.proxy._stopping.is_set():
                return False
        return not self._stopping()

    def _swallow(self) -> None:
        """Blackhole: read and discard whatever the client sends; never answer, never close."""
        while not self._stopping():
            try:
                if not self.client.recv(CHUNK):
                    break  # the client closed its side; keep ours open until aborted
            except TimeoutError:
                continue
        while not self._stopping():
            self.aborting.wait(POLL)

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        """Forward ``src`` to ``dst`` with this connection's faults until EOF, an error or abort."""
        mode = self.mode
        limit = mode.cut_after if mode.cut_direction == direction else None
        next_send = 0.0  # throttle: when the next chunk may go at the earliest
        while not self._stopping():
            if limit is not None and self.sent[direction] >= limit:
                self.abort()
                return
            try:
                data = src.recv(mode.chunk)
            except TimeoutError:
                continue
            except OSError:
                self.abort()  # reset by the peer: reset the other side too
                return
            received = time.monotonic()
            if not data:
                # Half-close: pass the EOF on; the other direction keeps flowing.
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            if limit is not None:
                data = data[: limit - self.sent[direction]]
            deadline = received + mode.delay
            if mode.rate:
                # No credit for idle time: a chunk of n bytes takes n / rate after the previous one.
                next_send = max(received, next_send) + len(data) / mode.rate
                deadline = max(deadline, next_send)
            if not self._wait_until(deadline) or not self._send(dst, data, direction):
                self.abort()
                return

    def _send(self, dst: socket.socket, data: bytes, direction: str) -> bool:
        """Send all of ``data``, counting what went; False when the connection ends first."""
        view = memoryview(data)
        while view:
            if self._stopping():
                return False
            try:
                sent = dst.send(view)
            except TimeoutError:
                continue
            except OSError:
                return False
            view = view[sent:]
            self.sent[direction] += sent
            self.proxy._count(direction, sent)
        return True


class FaultProxy:
    """Listens on 127.0.0.1:<free port>, forwards each accepted connection to (target_host, target_port).

    Use as a context manager (``with FaultProxy(server.host, server.port) as proxy:``) or call
    ``start()`` and ``stop()``. Clients connect to ``proxy.host``, ``proxy.port``.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = HOST
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((HOST, 0))
        self._listener.listen(16)
        self._listener.settimeout(POLL)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._mode = _Mode()
        self._stopping = threading.Event()
        self._connections: list[_Connection] = []
        self._threads: list[threading.Thread] = []
        self._bytes = {UP: 0, DOWN: 0}
        self._accept_thread = threading.Thread(target=self._accept, name=f"fault-proxy-{self.port}-accept", daemon=True)

    # --- lifecycle

    def start(self) -> FaultProxy:
        """Start accepting connections; returns self."""
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection (RST), and join every thread the proxy started."""
        self._stopping.set()
        deadline = time.monotonic() + JOIN_TIMEOUT
        if self._accept_thread.is_alive():
            self._accept_thread.join(JOIN_TIMEOUT)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for connection in connections:
            connection.abort()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in [self._accept_thread, *threads] if t.is_alive()]
        if stuck:
            raise RuntimeError(f"FaultProxy threads did not stop: {stuck}")

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- fault modes (each replaces the previous one; applies to connections accepted afterwards)

    def _set_mode(self, mode: _Mode) -> None:
        with self._lock:
            self._mode = mode

    def passthrough(self) -> None:
        """Forward normally (the default)."""
        self._set_mode(_Mode())

    def blackhole(self) -> None:
        """Accept TCP, read and discard what the client sends, never send a byte, never close (until stop())."""
        self._set_mode(_Mode(blackhole=True))

    def cut_after(self, nbytes: int, direction: str = UP) -> None:
        """Forward exactly ``nbytes`` in ``direction`` ("up" = client->server, "down"), then RST both sides."""
        if direction not in (UP, DOWN):
            raise ValueError(f"direction must be {UP!r} or {DOWN!r}, not {direction!r}")
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        self._set_mode(_Mode(cut_after=nbytes, cut_direction=direction))

    def delay(self, seconds: float) -> None:
        """Forward, but hold each chunk ``seconds`` after receiving it (both directions)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._set_mode(_Mode(delay=seconds))

    def throttle(self, bytes_per_second: int) -> None:
        """Forward at most ``bytes_per_second`` per direction per connection (no burst credit)."""
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be > 0")
        self._set_mode(_Mode(rate=bytes_per_second))

    def cut_all(self) -> None:
        """Abort (RST) every connection open now, and return once their sockets are closed."""
        with self._lock:
            connections = [c for c in self._connections if not c.closed.is_set()]
        for connection in connections:
            connection.abort()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for connection in connections:
            connection.closed.wait(max(0.0, deadline - time.monotonic()))

    # --- observations

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._connections)

    @property
    def open_connections(self) -> int:
        """Accepted connections whose sockets are not closed yet."""
        with self._lock:
            return sum(not c.closed.is_set() for c in self._connections)

    @property
    def bytes_up(self) -> int:
        """Bytes forwarded client -> server, over all connections."""
        with self._lock:
            return self._bytes[UP]

    @property
    def bytes_down(self) -> int:
        """Bytes forwarded server -> client, over all connections."""
        with self._lock:
            return self._bytes[DOWN]

    def wait_until(self, predicate: Callable[[], object], timeout: float = 2.0) -> bool:
        """Poll ``predicate()`` until it is true or ``timeout`` passes; return its last value."""
        deadline = time.monotonic() + timeout
        while not (ok := bool(predicate())):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        return ok

    # --- internals

    def _count(self, direction: str, nbytes: int) -> None:
        with self._lock:
            self._bytes[direction] += nbytes

    def _accept(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    client, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stopping.is_set():
                        break
                    raise
                with self._lock:
                    connection = _Connection(self, len(self._connections) + 1, client, self._mode)
                    self._connections.append(connection)
                threads = connection.start()
                with self._lock:
                    self._threads.extend(threads)
        finally:
            self._listener.close()

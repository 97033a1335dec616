"""A small threaded WSGI server that no HTTP client can hold up: the one of ``/metrics`` and ``/healthz``.

Anything on the port may be slow or hostile: a client that connects and says nothing, sends half a
request, sends it a byte at a time, opens many connections, or never reads its answer. So:

- every connection has a thread of its own (a daemon thread: it never keeps the process alive),
  ``io_timeout`` seconds for each read or write, and ``deadline`` seconds in all; the serving loop
  cuts the connections past their deadline;
- at most ``max_connections`` are served at once; one more is closed as soon as it is accepted;
- ``close()`` stops accepting, cuts every connection (the threads blocked on them get an error at
  once) and gives those threads ``join_wait`` seconds to end: it waits on our own code finishing,
  never on a client;
- an error of a request (a timeout, a reset, a cut, even a bug in the application) is one line in
  the debug log; nothing goes to stderr (``socketserver`` and ``wsgiref`` print tracebacks there).

One request per connection (wsgiref answers ``Connection: close``), so a connection's deadline is
its request's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

log = logging.getLogger(__name__)

#: a WSGI application
App = Callable[[dict[str, Any], Callable[..., Any]], Any]

#: the longest request line accepted (as ``wsgiref``)
_MAX_LINE = 65536


def _describe(exc: BaseException | None) -> str:
    """One line for a failed request: ``TimeoutError: timed out``."""
    if exc is None:
        return "unknown error"
    text = str(exc) or exc.__class__.__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


class _ServerHandler(ServerHandler):
    """wsgiref's request runner, with the application's errors logged (debug) instead of printed."""

    def log_exception(self, exc_info: Any) -> None:
        try:
            log.debug("http: the application failed: %s", _describe(exc_info[1]))
        finally:
            exc_info = None


class _RequestHandler(WSGIRequestHandler):
    """One request on one connection; its socket timeout is the server's ``io_timeout``."""

    server: Server

    def setup(self) -> None:
        self.timeout = self.server.io_timeout
        super().setup()

    def handle(self) -> None:
        # WSGIRequestHandler.handle, with our ServerHandler (no traceback on stderr)
        self.raw_requestline = self.rfile.readline(_MAX_LINE + 1)
        if len(self.raw_requestline) > _MAX_LINE:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.raw_requestline or not self.parse_request():
            return  # closed without a request, or an error answer was sent
        handler = _ServerHandler(self.rfile, self.wfile, sys.stderr, self.get_environ(), multithread=True)
        handler.request_handler = self  # wsgiref's back pointer, for log_request
        handler.run(self.server.get_app())

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class Server(socketserver.ThreadingMixIn, WSGIServer):
    """The WSGI server; ``serve_forever`` in one thread, ``close_connections`` then ``server_close`` to end."""

    daemon_threads = True
    #: server_close() joins no request thread: close_connections() cuts them and waits a bounded time
    block_on_close = False
    allow_reuse_address = True

    #: seconds for each read or write of a connection
    io_timeout: float = 10.0
    #: seconds a connection may last in all (its one request: read, answer, written)
    deadline: float = 30.0
    #: connections served at once; more are closed when accepted
    max_connections: int = 64

    def __init__(self, address: tuple[str, int], app: App, **limits: float) -> None:
        for name, value in limits.items():
            if name not in ("io_timeout", "deadline", "max_connections"):
                raise TypeError(f"unknown limit {name}")
            setattr(self, name, value)
        self._lock = threading.Lock()
        #: open connections: their deadline (monotonic; inf once cut) and thread
        self._open: dict[socket.socket, tuple[float, threading.Thread]] = {}
        self._closing = False
        super().__init__(address, _RequestHandler)
        self.set_app(app)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks the DNS for the host's full name (socket.getfqdn): it can hang
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = port
        self.setup_environ()

    # --- one thread per connection, within the limits

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), name="ftpexport-http", daemon=True
        )
        with self._lock:
            refused = self._closing or len(self._open) >= self.max_connections
            if not refused:
                self._open[request] = (time.monotonic() + self.deadline, thread)
        if refused:
            log.debug("http: connection from %s closed at once: %d connections are open", _peer(client_address),
                      self.max_connections)  # fmt: skip
            self.shutdown_request(request)
            return
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints the traceback on stderr: a client that went away is no news
        log.debug("http: request from %s ended: %s", _peer(client_address), _describe(sys.exc_info()[1]))

    def service_actions(self) -> None:
        # called by serve_forever at each turn (every poll_interval at least)
        self._cut(overdue_at=time.monotonic())

    def _cut(self, *, overdue_at: float | None = None) -> list[threading.Thread]:
        """Cut the connections past their deadline (every one without ``overdue_at``); returns their threads."""
        with self._lock:
            victims = [
                (request, thread)
                for request, (deadline, thread) in self._open.items()
                if overdue_at is None or deadline <= overdue_at
            ]
            for request, thread in victims:
                self._open[request] = (math.inf, thread)
                # under the lock: shutdown_request() forgets a connection before closing it, so this one
                # is not closed yet (its descriptor is not another socket's). Not close(): its thread may be
                # using it; shutdown wakes that thread with an end of file or an error.
                with contextlib.suppress(OSError):
                    request.shutdown(socket.SHUT_RDWR)
        if overdue_at is not None and victims:
            log.debug("http: %d connection(s) cut after %g s", len(victims), self.deadline)
        return [thread for _, thread in victims]

    def close_connections(self, join_wait: float) -> None:
        """Refuse new connections, cut the open ones, give their threads ``join_wait`` seconds to end.

        Call it once ``serve_forever`` has returned: no connection is being accepted any more.
        """
        with self._lock:
            self._closing = True
        threads = self._cut()
        log.debug("http: stopping: %d open connection(s) cut", len(threads))
        deadline = time.monotonic() + join_wait
        for thread in threads:
            if thread.ident is None:
                continue  # never started (serve_forever was not running)
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [t for t in threads if t.is_alive()]
        if busy:
            log.debug("http: %d request thread(s) still busy at close, left behind (daemon threads)", len(busy))


class Server6(Server):
    address_family = socket.AF_INET6


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else address[0]
        return f"{host}:{address[1]}"
    return str(address)

"""The metrics HTTP server against clients that misbehave: none holds it up, none prints on stderr.

In-process servers on 127.0.0.1 (port 0); ``http_clients.BadClients`` opens the bad connections.
Deadlines of these tests are liveness bounds (a test fails instead of hanging), never measures.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from http_clients import BadClients, closed_by_server
from polling import eventually

from ftpexport.health import Health, Report
from ftpexport.metrics import Metrics, MetricsServer

#: a server whose close() is not back after this long is held up by a client
LIVENESS = 20.0


@contextlib.contextmanager
def debug_log(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """The records of ftpexport's loggers at DEBUG, and only here: an earlier command may have left its
    handler (to stderr) on the logger and stopped the propagation."""
    logger = logging.getLogger("ftpexport")
    propagate, handlers = logger.propagate, list(logger.handlers)
    for handler in handlers:
        logger.removeHandler(handler)
    logger.addHandler(caplog.handler)
    logger.propagate = False  # each record once
    try:
        with caplog.at_level(logging.DEBUG, logger="ftpexport"):
            yield caplog.records
    finally:
        logger.removeHandler(caplog.handler)
        for handler in handlers:
            logger.addHandler(handler)
        logger.propagate = propagate


def get(server: MetricsServer, path: str) -> tuple[int, bytes]:
    """(status, body) of one GET."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def answers(server: MetricsServer) -> bool:
    try:
        return get(server, "/healthz")[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def close_within_liveness(server: MetricsServer) -> None:
    """close() in a thread; fails the test if it is still running after LIVENESS seconds."""
    closing = threading.Thread(target=server.close, name="test-close")
    closing.start()
    closing.join(LIVENESS)
    assert not closing.is_alive(), f"MetricsServer.close() still waiting after {LIVENESS:g} s"


def test_close_cuts_silent_half_sent_dripping_and_unread_connections_without_a_word_on_stderr(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    server = MetricsServer(Metrics(), "127.0.0.1", 0).start()
    with debug_log(caplog) as records, BadClients("127.0.0.1", server.port) as clients:
        silent = clients.silent(10)
        half = clients.half_request()
        dripping = clients.dripping()
        unread = clients.never_reading()
        # accepted in order: the server holds every connection above when it answers this one
        assert get(server, "/healthz")[0] == 200

        close_within_liveness(server)

        for sock in [*silent, half, dripping, unread]:
            assert closed_by_server(sock)
    assert capfd.readouterr().err == ""
    assert not [r for r in records if r.levelno > logging.DEBUG or r.exc_info]
    # the 10 silent, the half-sent and the dripping ones at least (the unread answer may fit in the socket buffers)
    [cut] = [r.args for r in records if r.getMessage().startswith("http: stopping:")]
    assert cut[0] >= 12


def test_a_connection_past_its_deadline_is_cut_while_the_server_runs() -> None:
    server = MetricsServer(Metrics(), "127.0.0.1", 0, deadline=0.5).start()
    try:
        with BadClients("127.0.0.1", server.port) as clients:
            dripping = clients.dripping(every=0.1)  # faster than the 10 s read timeout: only the deadline cuts it
            silent = clients.silent()[0]
            assert closed_by_server(dripping)
            assert closed_by_server(silent)
            assert get(server, "/healthz")[0] == 200
    finally:
        server.close()


def test_connections_beyond_the_limit_are_closed_at_once_and_the_slots_come_back() -> None:
    server = MetricsServer(Metrics(), "127.0.0.1", 0, max_connections=3).start()
    try:
        with BadClients("127.0.0.1", server.port) as clients:
            held = clients.silent(3)
            [extra] = clients.silent()
            assert closed_by_server(extra)
            assert not answers(server)
            for sock in held:
                sock.close()
            eventually(lambda: answers(server), "the server to answer once the 3 silent connections are gone")
    finally:
        server.close()


class _BrokenHealth(Health):
    def report(self) -> Report:
        raise RuntimeError("a bug in the health check")


def test_an_error_of_the_application_is_a_500_and_a_debug_line_not_a_traceback(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    server = MetricsServer(Metrics(_BrokenHealth()), "127.0.0.1", 0).start()
    try:
        with debug_log(caplog) as records:
            status, _ = get(server, "/healthz")
    finally:
        server.close()
    assert status == 500
    assert capfd.readouterr().err == ""
    failed: list[Any] = [r for r in records if "a bug in the health check" in r.getMessage()]
    assert failed and all(r.levelno == logging.DEBUG and not r.exc_info for r in failed)

"""Prometheus metrics of the watch daemon, and the HTTP server of ``/metrics`` and ``/healthz``.

``Metrics`` is an observer of the exporter: its hooks update counters and a histogram (a lock and
a dict lookup each, from the worker threads). What is a state rather than an event (queues, the
breakers, the oldest pending delivery, the watcher's heartbeat) is read when Prometheus scrapes,
by a collector that asks the exporter and the ledger. Everything lives in the ``Metrics``'s own
registry, never in prometheus_client's global one.

Label cardinality: ``destination`` (``client/name``) is the widest label, about 400 values. The
counters have at most 6 results or 4 verdicts per destination; the duration histogram is labelled
by destination only (its 13 buckets x 400 destinations are ~6000 series); no label carries a
record id, a path or an error message.
"""

from __future__ import annotations

import json
import logging
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .dispatch import LaneState
from .errors import ConfigError
from .events import Attempt, Observer, Outcome, Verdict
from .health import Health
from .httpd import Server, Server6

log = logging.getLogger(__name__)

#: attempt durations, seconds: a small file on a LAN (50 ms) to a big zip cut by a 10 min timeout
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

#: ``ftpexport_breaker_state`` values
CLOSED, OPEN, PROBING = 0, 1, 2


def breaker_state(lane: LaneState) -> int:
    """0 closed, 1 open (paused), 2 probing (the pause is over, one job tries the destination)."""
    if lane.paused_for > 0:
        return OPEN
    return PROBING if lane.trips else CLOSED


class Metrics(Observer):
    """The daemon's metrics, in ``self.registry``; an observer of the exporter.

    ``attach`` gives it the exporter's lanes and the ledger's oldest pending delivery, read at
    scrape time. ``health`` gets the attempt events too and answers ``/healthz``.
    """

    def __init__(self, health: Health | None = None, *, wall: Callable[[], float] = time.time) -> None:
        self.health = health or Health()
        self._wall = wall
        self._lanes_source: Callable[[], dict[str, LaneState]] = dict
        self._oldest_pending: Callable[[], str | None] = lambda: None
        self._refused: Callable[[], dict[str, int]] = dict
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "ftpexport_deliveries",
            "Deliveries settled, by result: delivered, skipped (if_exists: skip), unchanged (delivered "
            "earlier), failed (parked now), parked (failed earlier), deferred (left pending).",
            ["client", "destination", "result"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "ftpexport_attempts",
            "Delivery attempts ended, by verdict: done, retry, failed (given up), deferred (stopping).",
            ["client", "destination", "verdict"],
            registry=self.registry,
        )
        self.bytes_sent = Counter(
            "ftpexport_bytes_sent",
            "Bytes put on the wire, counted as they go (also by attempts that fail later).",
            ["client", "destination"],
            registry=self.registry,
        )
        self.durations = Histogram(
            "ftpexport_attempt_duration_seconds",
            "Duration of delivery attempts, whatever their verdict (packaging, connecting, uploading).",
            ["destination"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            "ftpexport_records_refused",
            "Times a record folder was refused, by kind: record (vehicle.json or images not valid), rules (no "
            "rule file, a broken one, no destination), naming (a name that renders badly). Client '' when the "
            "record could not tell.",
            ["client", "kind"],
            registry=self.registry,
        )
        Info("ftpexport_build", "The running ftpexport.", registry=self.registry).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.registry.register(_StateCollector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def attach(
        self,
        *,
        lanes: Callable[[], dict[str, LaneState]],
        oldest_pending: Callable[[], str | None],
        refused: Callable[[], dict[str, int]] = dict,
    ) -> None:
        """Where the scrape-time state comes from: ``Exporter.lanes``, ``Ledger.oldest_pending`` and
        ``Ledger.refused_counts``."""
        self._lanes_source = lanes
        self._oldest_pending = oldest_pending
        self._refused = refused

    # --- observer hooks (worker threads: quick, no I/O)

    def queued(self, client_id: str, destination: str, record_id: str, estimated_bytes: int) -> None:
        # the series exist from the first delivery on, so rate() and increase() see their first step
        for result in ("delivered", "failed"):
            self.deliveries.labels(client_id, destination, result)
        self.bytes_sent.labels(client_id, destination)

    def attempt_started(self, attempt: Attempt) -> None:
        self.health.attempt_started(attempt)

    def sent(self, attempt: Attempt, n: int) -> None:
        self.bytes_sent.labels(attempt.client_id, attempt.destination).inc(n)
        self.health.sent(attempt, n)

    def attempt_ended(self, attempt: Attempt, verdict: Verdict, seconds: float, sent: int) -> None:
        self.health.attempt_ended(attempt, verdict, seconds, sent)
        self.attempts.labels(attempt.client_id, attempt.destination, verdict).inc()
        self.durations.labels(attempt.destination).observe(seconds)

    def outcome(self, outcome: Outcome) -> None:
        self.deliveries.labels(outcome.client_id, outcome.destination, outcome.result).inc()

    def refused(self, record_path: str, client_id: str | None, kind: str) -> None:
        self.refusals.labels(client_id or "", kind).inc()

    # --- scrape-time state

    def lanes(self) -> dict[str, LaneState]:
        """Every destination's queue and breaker, now."""
        return self._lanes_source()

    def refused_now(self) -> dict[str, int]:
        """Record folders refused now (in the ledger), by client id."""
        return self._refused()

    def oldest_pending_age(self) -> float:
        """Seconds since the oldest pending delivery was created; 0 when nothing is pending."""
        oldest = self._oldest_pending()
        if oldest is None:
            return 0.0
        return max(0.0, self._wall() - datetime.fromisoformat(oldest).timestamp())


class _StateCollector(Collector):
    """Gauges computed when Prometheus scrapes; a source that fails is logged and left out."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self.metrics
        yield GaugeMetricFamily("ftpexport_up", "1 while the watch daemon runs.", value=1)
        yield from self._lanes()
        try:
            age = m.oldest_pending_age()
        except Exception:  # a locked or closed ledger must not fail the whole scrape
            log.exception("metrics: could not read the oldest pending delivery")
        else:
            yield GaugeMetricFamily(
                "ftpexport_oldest_pending_age_seconds",
                "Age of the oldest delivery still pending in the ledger (0 when none is).",
                value=age,
            )
        try:
            refused = m.refused_now()
        except Exception:
            log.exception("metrics: could not read the refused records")
        else:
            family = GaugeMetricFamily(
                "ftpexport_refused_records",
                "Record folders refused now (kept in the ledger until fixed or gone), by client ('' when the "
                "record could not tell); ftpexport status lists them.",
                labels=["client"],
            )
            for client, n in sorted(refused.items()):
                family.add_metric([client], n)
            yield family
        health = m.health
        if health.last_tick_wall is not None:
            yield GaugeMetricFamily(
                "ftpexport_watcher_last_tick_timestamp_seconds",
                "Unix time of the watcher loop's last heartbeat (every ~5 s).",
                value=health.last_tick_wall,
            )
        report = health.report()
        yield GaugeMetricFamily(
            "ftpexport_stalled_attempts",
            "Running attempts without progress for --health-stale seconds.",
            value=len(report.checks["workers"]["stalled"]),
        )
        yield GaugeMetricFamily("ftpexport_healthy", "1 when /healthz answers 200, else 0.", value=int(report.ok))

    def _lanes(self) -> Iterator[Metric]:
        try:
            lanes = self.metrics.lanes()
        except Exception:
            log.exception("metrics: could not read the destinations' queues")
            return
        families = {
            "queue": GaugeMetricFamily(
                "ftpexport_queue_depth",
                "Deliveries queued for a destination, waiting for a worker or a retry delay.",
                labels=["destination"],
            ),
            "active": GaugeMetricFamily(
                "ftpexport_active_uploads", "Attempts running now for a destination.", labels=["destination"]
            ),
            "state": GaugeMetricFamily(
                "ftpexport_breaker_state",
                "Circuit breaker of a destination: 0 closed, 1 open (paused), 2 probing.",
                labels=["destination"],
            ),
            "pause": GaugeMetricFamily(
                "ftpexport_breaker_pause_seconds",
                "Seconds until a paused destination is tried again (0 when not paused).",
                labels=["destination"],
            ),
            "trips": GaugeMetricFamily(
                "ftpexport_breaker_trips",
                "Times in a row the breaker of a destination opened (0 once it answers).",
                labels=["destination"],
            ),
        }
        for key, lane in sorted(lanes.items()):
            families["queue"].add_metric([key], lane.queued)
            families["active"].add_metric([key], lane.active)
            families["state"].add_metric([key], breaker_state(lane))
            families["pause"].add_metric([key], lane.paused_for)
            families["trips"].add_metric([key], lane.trips)
        yield from families.values()


# --- the HTTP server


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` (port 0: one the OS picks, see ``port``), in a
    daemon thread, until ``close()``.

    No client holds it up (see ``httpd``): ``limits`` are ``io_timeout``, ``deadline`` and
    ``max_connections`` of ``httpd.Server``; ``close`` cuts the connections still open.
    """

    #: seconds ``close`` gives the request threads to end once their connections are cut
    join_wait = 1.0

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0, **limits: float) -> None:
        # _created series would double the number of series of every counter and histogram
        disable_created_metrics()
        self.metrics = metrics
        self._metrics_app = make_wsgi_app(metrics.registry)
        server_class = Server6 if ":" in host else Server
        try:
            self._httpd = server_class((host, port), self._app, **limits)
        except OSError as exc:
            raise ConfigError(
                f"metrics: cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="choose another --metrics-port or --metrics-host",
            ) from exc
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="ftpexport-metrics", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, cut the connections still open (never wait on a client), close the socket."""
        if self._thread.is_alive():
            self._httpd.shutdown()  # serve_forever ends within its poll interval: it never blocks on a client
            self._thread.join()
        self._httpd.close_connections(self.join_wait)
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO") or "/"
        head = environ.get("REQUEST_METHOD") == "HEAD"
        if path == "/metrics":
            if head:
                environ = {**environ, "REQUEST_METHOD": "GET"}
                self._metrics_app(environ, start_response)
                return [b""]
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            report = self.metrics.health.report()
            body = json.dumps(report.document(), indent=2).encode() + b"\n"
            status = "200 OK" if report.ok else "503 Service Unavailable"
            return self._reply(start_response, status, "application/json", body, head)
        if path == "/":
            body = b"ftpexport: /metrics (Prometheus), /healthz (200 healthy, 503 stuck)\n"
            return self._reply(start_response, "200 OK", "text/plain; charset=utf-8", body, head)
        return self._reply(start_response, "404 Not Found", "text/plain; charset=utf-8", b"not found\n", head)

    @staticmethod
    def _reply(start_response: Callable[..., Any], status: str, kind: str, body: bytes, head: bool) -> list[bytes]:
        start_response(
            status, [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
        )
        return [b"" if head else body]

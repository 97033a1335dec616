"""The metrics observer, the scrape-time collector, the health rules (fake clock) and the HTTP server.

The daemon end to end (a real ``ftpexport watch`` scraped over HTTP) is in
``tests/integration/test_metrics.py``.
"""

from __future__ import annotations

import json
import logging
import platform
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ftpexport import __version__
from ftpexport.dispatch import LaneState
from ftpexport.errors import ConfigError
from ftpexport.events import Attempt, Observers, Outcome
from ftpexport.health import Health
from ftpexport.metrics import DURATION_BUCKETS, Metrics, MetricsServer


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


DMS = Attempt("corr-1", "acme-motors", "acme-motors/dms", "veh-1")
DEAD = Attempt("corr-2", "acme-motors", "acme-motors/dead", "veh-2")


def outcome(attempt: Attempt, result: str, size: int = 0) -> Outcome:
    return Outcome(attempt.record_id, f"/inbox/{attempt.record_id}", attempt.client_id, attempt.destination,
                   result, bytes=size, correlation_id=attempt.correlation_id)  # type: ignore[arg-type]  # fmt: skip


def scrape(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition text, parsed back: ``{(name, labels): value}``."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# --- the observer's counters


def test_counters_follow_the_exporters_events() -> None:
    metrics = Metrics()
    events = Observers([metrics])  # as the exporter calls it
    events.queued("acme-motors", "acme-motors/dms", "veh-1", 5000)
    events.attempt_started(DMS)
    events.sent(DMS, 3000)
    events.sent(DMS, 2000)
    events.attempt_ended(DMS, "done", 0.3, 5000)
    events.outcome(outcome(DMS, "delivered", 5000))
    for verdict in ("retry", "retry", "failed"):
        events.attempt_started(DEAD)
        events.attempt_ended(DEAD, verdict, 42.0, 0)
    events.outcome(outcome(DEAD, "failed"))
    events.outcome(outcome(DMS, "unchanged"))

    s = scrape(metrics)
    dms = {"client": "acme-motors", "destination": "acme-motors/dms"}
    dead = {"client": "acme-motors", "destination": "acme-motors/dead"}
    assert value(s, "ftpexport_deliveries_total", **dms, result="delivered") == 1
    assert value(s, "ftpexport_deliveries_total", **dms, result="unchanged") == 1
    assert value(s, "ftpexport_deliveries_total", **dead, result="failed") == 1
    assert value(s, "ftpexport_attempts_total", **dms, verdict="done") == 1
    assert value(s, "ftpexport_attempts_total", **dead, verdict="retry") == 2
    assert value(s, "ftpexport_attempts_total", **dead, verdict="failed") == 1
    assert value(s, "ftpexport_bytes_sent_total", **dms) == 5000
    assert value(s, "ftpexport_attempt_duration_seconds_count", destination="acme-motors/dms") == 1
    assert value(s, "ftpexport_attempt_duration_seconds_sum", destination="acme-motors/dms") == pytest.approx(0.3)
    assert value(s, "ftpexport_attempt_duration_seconds_bucket", destination="acme-motors/dms", le="0.25") == 0
    assert value(s, "ftpexport_attempt_duration_seconds_bucket", destination="acme-motors/dms", le="0.5") == 1
    assert value(s, "ftpexport_attempt_duration_seconds_count", destination="acme-motors/dead") == 3
    assert value(s, "ftpexport_attempt_duration_seconds_bucket", destination="acme-motors/dead", le="30.0") == 0
    assert value(s, "ftpexport_attempt_duration_seconds_bucket", destination="acme-motors/dead", le="60.0") == 3
    assert value(s, "ftpexport_build_info", version=__version__, python=platform.python_version()) == 1


def test_a_queued_delivery_creates_its_series_at_zero() -> None:
    metrics = Metrics()
    metrics.queued("bravo-cars", "bravo-cars/ftp", "veh-9", 100)

    s = scrape(metrics)
    labels = {"client": "bravo-cars", "destination": "bravo-cars/ftp"}
    assert value(s, "ftpexport_deliveries_total", **labels, result="delivered") == 0
    assert value(s, "ftpexport_deliveries_total", **labels, result="failed") == 0
    assert value(s, "ftpexport_bytes_sent_total", **labels) == 0


def test_the_duration_histogram_is_labelled_by_destination_only_with_buckets_from_50ms_to_10min() -> None:
    metrics = Metrics()
    metrics.attempt_ended(DMS, "done", 0.01, 0)

    [family] = [f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())
                if f.name == "ftpexport_attempt_duration_seconds"]  # fmt: skip
    assert family.type == "histogram"
    assert {frozenset(s.labels) - {"le"} for s in family.samples} == {frozenset({"destination"})}
    bounds = sorted(float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket"))
    assert bounds[0] == 0.05 and bounds[-2] == 600 and bounds[-1] == float("inf")
    assert bounds[:-1] == list(DURATION_BUCKETS)


def test_counters_are_exact_under_concurrent_workers() -> None:
    metrics = Metrics()
    attempts = [Attempt(f"c{i}", "acme-motors", "acme-motors/dms", f"veh-{i}") for i in range(8)]

    def work(attempt: Attempt) -> None:
        metrics.attempt_started(attempt)
        for _ in range(1000):
            metrics.sent(attempt, 7)
        metrics.attempt_ended(attempt, "done", 0.1, 7000)

    threads = [threading.Thread(target=work, args=(a,)) for a in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    s = scrape(metrics)
    assert value(s, "ftpexport_bytes_sent_total", client="acme-motors", destination="acme-motors/dms") == 8 * 7000
    assert (
        value(s, "ftpexport_attempts_total", client="acme-motors", destination="acme-motors/dms", verdict="done") == 8
    )
    assert metrics.health.report().checks["workers"]["running_attempts"] == 0


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # the global registry would refuse the second
    first.outcome(outcome(DMS, "delivered"))

    labels = {"client": "acme-motors", "destination": "acme-motors/dms", "result": "delivered"}
    assert value(scrape(first), "ftpexport_deliveries_total", **labels) == 1
    assert value(scrape(second), "ftpexport_deliveries_total", **labels) is None


# --- the state read at scrape time


def test_queues_breakers_and_the_oldest_pending_delivery_are_read_at_scrape_time() -> None:
    wall = FakeClock(1_700_000_100.0)
    metrics = Metrics(wall=wall)
    lanes = {
        "acme-motors/dms": LaneState(queued=4, active=2, paused_for=0.0, trips=0, last_error=None),
        "acme-motors/dead": LaneState(queued=7, active=0, paused_for=25.0, trips=2, last_error="refused"),
        "bravo-cars/ftp": LaneState(queued=1, active=1, paused_for=0.0, trips=1, last_error="timed out"),
    }
    oldest: list[str | None] = ["2023-11-14T22:13:20.000+00:00"]  # 1_700_000_000
    metrics.attach(lanes=lambda: dict(lanes), oldest_pending=lambda: oldest[0])

    s = scrape(metrics)
    assert value(s, "ftpexport_up") == 1
    assert value(s, "ftpexport_queue_depth", destination="acme-motors/dms") == 4
    assert value(s, "ftpexport_queue_depth", destination="acme-motors/dead") == 7
    assert value(s, "ftpexport_active_uploads", destination="acme-motors/dms") == 2
    assert value(s, "ftpexport_breaker_state", destination="acme-motors/dms") == 0  # closed
    assert value(s, "ftpexport_breaker_state", destination="acme-motors/dead") == 1  # open
    assert value(s, "ftpexport_breaker_state", destination="bravo-cars/ftp") == 2  # probing
    assert value(s, "ftpexport_breaker_pause_seconds", destination="acme-motors/dead") == 25
    assert value(s, "ftpexport_breaker_pause_seconds", destination="bravo-cars/ftp") == 0
    assert value(s, "ftpexport_breaker_trips", destination="acme-motors/dead") == 2
    assert value(s, "ftpexport_oldest_pending_age_seconds") == pytest.approx(100.0)

    # read again at the next scrape: a lane drained, the breaker closed, nothing pending
    lanes["acme-motors/dead"] = LaneState(queued=0, active=0, paused_for=0.0, trips=0, last_error=None)
    oldest[0] = None
    s = scrape(metrics)
    assert value(s, "ftpexport_queue_depth", destination="acme-motors/dead") == 0
    assert value(s, "ftpexport_breaker_state", destination="acme-motors/dead") == 0
    assert value(s, "ftpexport_oldest_pending_age_seconds") == 0


def test_a_failing_source_is_logged_and_the_rest_of_the_scrape_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()

    def broken() -> Any:
        raise RuntimeError("database is locked")

    metrics.attach(lanes=broken, oldest_pending=broken)
    metrics.outcome(outcome(DMS, "delivered"))
    # an earlier command may have set up ftpexport's logging (no propagation to the root): listen on the logger
    logger = logging.getLogger("ftpexport.metrics")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.ERROR, logger="ftpexport.metrics"):
            s = scrape(metrics)
    finally:
        logger.removeHandler(caplog.handler)

    assert value(s, "ftpexport_up") == 1
    assert value(s, "ftpexport_deliveries_total", client="acme-motors", destination="acme-motors/dms",
                 result="delivered") == 1  # fmt: skip
    assert not any(name == "ftpexport_oldest_pending_age_seconds" for name, _ in s)
    # by identity: the record may reach the handler through the logger and through the root
    assert len({id(r) for r in caplog.records if "could not read" in r.getMessage()}) == 2


def test_the_watcher_heartbeat_and_health_are_metrics_too() -> None:
    clock, wall = FakeClock(), FakeClock(1_700_000_000.0)
    metrics = Metrics(Health(10, clock=clock, wall=wall))
    assert not any(name == "ftpexport_watcher_last_tick_timestamp_seconds" for name, _ in scrape(metrics))

    metrics.health.tick()
    metrics.attempt_started(DMS)
    clock.advance(11)
    s = scrape(metrics)
    assert value(s, "ftpexport_watcher_last_tick_timestamp_seconds") == 1_700_000_000.0
    assert value(s, "ftpexport_stalled_attempts") == 1
    assert value(s, "ftpexport_healthy") == 0


# --- the health rules


def test_healthy_at_start_and_while_the_watcher_ticks() -> None:
    clock = FakeClock()
    health = Health(10, clock=clock)
    assert health.report().ok  # the watcher gets `stale` seconds for its first tick
    for _ in range(5):
        clock.advance(9)
        health.tick()
        assert health.report().ok


def test_a_watcher_that_does_not_tick_for_stale_seconds_is_unhealthy_until_it_ticks_again() -> None:
    clock = FakeClock()
    health = Health(300, watcher_stale=15, clock=clock)
    health.tick()
    clock.advance(14.9)
    assert health.report().ok
    clock.advance(0.1)

    report = health.report()
    assert not report.ok
    assert report.failing == ["watcher"]
    assert report.checks["watcher"]["seconds_since_tick"] == 15
    assert "not ticked for 15 s" in report.checks["watcher"]["error"]
    document = report.document()
    assert document["status"] == "unhealthy" and document["failing"] == ["watcher"]

    health.tick()
    assert health.report().ok


def test_an_attempt_without_progress_for_stale_seconds_is_stalled_and_bytes_reset_its_clock() -> None:
    clock = FakeClock()
    health = Health(30, clock=clock)
    health.attempt_started(DMS)
    health.attempt_started(DEAD)
    clock.advance(20)
    health.sent(DMS, 1000)  # progress: DMS's clock starts again
    health.tick()
    clock.advance(10)

    report = health.report()
    assert not report.ok
    assert report.failing == ["workers"]
    workers = report.checks["workers"]
    assert workers["running_attempts"] == 2
    assert [s["destination"] for s in workers["stalled"]] == ["acme-motors/dead"]
    [stalled] = workers["stalled"]
    assert stalled == {"destination": "acme-motors/dead", "client": "acme-motors", "record_id": "veh-2",
                       "correlation_id": "corr-2", "seconds_without_progress": 30, "seconds_running": 30,
                       "bytes": 0}  # fmt: skip
    assert "acme-motors/dead" in workers["error"]

    clock.advance(20)  # DMS has sent nothing for 30 s now
    stalled_now = health.report().checks["workers"]["stalled"]
    assert [(s["destination"], s["bytes"]) for s in stalled_now] == [("acme-motors/dead", 0), ("acme-motors/dms", 1000)]

    health.attempt_ended(DEAD, "retry", 50, 0)
    health.attempt_ended(DMS, "done", 50, 1000)
    health.tick()
    report = health.report()
    assert report.ok and report.checks["workers"]["running_attempts"] == 0


def test_a_slow_upload_that_keeps_sending_is_healthy() -> None:
    clock = FakeClock()
    health = Health(5, clock=clock)
    health.attempt_started(DMS)
    for _ in range(100):  # 500 s, a few bytes every 4 s
        clock.advance(4)
        health.sent(DMS, 10)
        health.tick()
        assert health.report().ok


def test_stale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stale"):
        Health(0)


# --- the HTTP server


def get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, also for 4xx and 5xx."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read().decode()


def test_the_server_answers_metrics_and_healthz_on_a_port_the_os_picked_and_stops_its_threads() -> None:
    clock = FakeClock()
    metrics = Metrics(Health(60, clock=clock))
    metrics.attach(lanes=lambda: {"acme-motors/dms": LaneState(3, 1, 0.0, 0, None)}, oldest_pending=lambda: None)
    metrics.attempt_started(DMS)
    before = set(threading.enumerate())
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    try:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"

        status, kind, body = get(f"{server.url}/metrics")
        assert status == 200 and kind.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(body)}
        [depth] = families["ftpexport_queue_depth"].samples
        assert depth.labels == {"destination": "acme-motors/dms"} and depth.value == 3
        assert not any(s.name.endswith("_created") for f in families.values() for s in f.samples)

        status, kind, body = get(f"{server.url}/healthz")
        assert (status, kind) == (200, "application/json")
        assert json.loads(body)["status"] == "ok"

        clock.advance(60)  # DMS's attempt has made no progress for 60 s
        status, kind, body = get(f"{server.url}/healthz")
        assert (status, kind) == (503, "application/json")
        document = json.loads(body)
        assert document["status"] == "unhealthy"
        assert document["failing"] == ["watcher", "workers"]
        assert [s["destination"] for s in document["checks"]["workers"]["stalled"]] == ["acme-motors/dms"]

        assert get(f"{server.url}/nothing")[0] == 404
    finally:
        server.close()
    assert [t for t in threading.enumerate() if t not in before] == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass


def test_a_port_in_use_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:\d+"):
            MetricsServer(Metrics(), "127.0.0.1", taken.getsockname()[1])

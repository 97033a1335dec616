"""``ftpexport watch --metrics-port``: a real daemon scraped over HTTP, its numbers checked against the ledger.

One client with a working FTP destination (pyftpdlib) and a dead one (nothing listens on its
port): deliveries, bytes, attempts, the duration histogram, the queue and the breaker as Prometheus
sees them. Then an upload hanging on a black-holed connection turns ``/healthz`` to 503 naming the
destination, and back to 200 once it moves again.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from faults import FaultProxy, closed_port
from http_clients import BadClients
from ledger_rows import attempts, deliveries
from polling import eventually
from processes import ExporterProcess, start_watch
from prometheus_client.parser import text_string_to_metric_families
from records import make_record
from rulefiles import write_rules
from servers import RunningServer

from ftpexport import __version__

pytestmark = pytest.mark.integration

CLIENT = "acme-motors"
DMS = f"{CLIENT}/dms"
DEAD = f"{CLIENT}/dead"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _get(url: str) -> tuple[int, str]:
    """(status, body) of a GET, also for 4xx and 5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def _scrape(base: str) -> Samples:
    """``/metrics`` parsed by prometheus_client's own parser: ``{(sample name, labels): value}``."""
    status, text = _get(f"{base}/metrics")
    assert status == 200, text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 for a series that does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def _health(base: str) -> tuple[int, dict[str, Any]]:
    status, body = _get(f"{base}/healthz")
    return status, json.loads(body)


def _metrics_url(daemon: ExporterProcess) -> str:
    """The server's base URL, from the "metrics on http://host:port/metrics" log line (the port was 0)."""
    [event] = [e for e in daemon.events() if e["message"].startswith("metrics on ")]
    url = event["message"].removeprefix("metrics on ")
    assert url == f"http://127.0.0.1:{event['port']}/metrics" and event["port"] > 0
    return url.removesuffix("/metrics")


def _stop(daemon: ExporterProcess, base: str) -> None:
    """SIGTERM: exit 0, and the metrics server is gone with the daemon."""
    daemon.terminate()
    assert daemon.wait() == 0, daemon.stderr
    with pytest.raises(urllib.error.URLError):
        _get(f"{base}/healthz")


def _rules(tmp_path: Path, destinations: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    write_rules(folder, f"client_id: {CLIENT}\ndestinations:\n{destinations}", CLIENT)
    return folder


def _ftp_destination(name: str, url: str, *extra: str) -> str:
    lines = [f"  - name: {name}", f"    url: {url}", "    password: ${METRICS_FTP_PASSWORD}",
             "    allow_plain_ftp: true", *(f"    {line}" for line in extra)]  # fmt: skip
    return "\n".join(lines) + "\n"


def test_metrics_scraped_from_a_running_daemon_match_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer
) -> None:
    monkeypatch.setenv("METRICS_FTP_PASSWORD", ftp_server.password)
    dead_url = f"ftp://{ftp_server.username}@127.0.0.1:{closed_port()}/dead"
    # dead: one connection at a time, so exactly 3 refused attempts open its breaker (--retries 0: each
    # refused delivery is parked at once) and the 2 other deliveries wait in its queue (--pause 600)
    rules = _rules(
        tmp_path,
        _ftp_destination("dms", ftp_server.url("dms")) + _ftp_destination("dead", dead_url, "max_connections: 1"),
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state = tmp_path / "ledger.sqlite3"
    started = time.time()

    daemon = start_watch(inbox, rules, state, "--metrics-port", "0", "--retries", "0", "--pause", "600")
    with daemon:
        base = _metrics_url(daemon)
        status, document = _health(base)
        assert status == 200 and document["status"] == "ok", document

        for number in range(5):
            make_record(inbox, 500 + number, name=f"veh-m{number}")

        def settled() -> bool:
            s = _scrape(base)
            return (
                _value(s, "ftpexport_deliveries_total", client=CLIENT, destination=DMS, result="delivered") == 5
                and _value(s, "ftpexport_breaker_state", destination=DEAD) == 1
                and _value(s, "ftpexport_queue_depth", destination=DEAD) == 2
            ) or not daemon.alive()

        eventually(settled, "5 deliveries to dms and dead's breaker open with 2 deliveries queued")
        assert daemon.alive(), daemon.stderr

        before = time.time()
        s = _scrape(base)
        after = time.time()
        rows = deliveries(state)
        tries = attempts(state)

        # what the ledger says, per destination
        by_destination = {row["id"]: row["destination"] for row in rows}
        ledger_status = Counter((row["destination"], row["status"]) for row in rows)
        assert ledger_status == {(DMS, "delivered"): 5, (DEAD, "failed"): 3, (DEAD, "pending"): 2}
        ledger_attempts = Counter(by_destination[a["delivery_id"]] for a in tries)
        delivered_bytes = sum(row["bytes"] for row in rows if row["destination"] == DMS)
        assert delivered_bytes > 0

        dms = {"client": CLIENT, "destination": DMS}
        dead = {"client": CLIENT, "destination": DEAD}
        assert _value(s, "ftpexport_deliveries_total", **dms, result="delivered") == 5
        assert _value(s, "ftpexport_deliveries_total", **dms, result="failed") == 0  # created at 0
        assert _value(s, "ftpexport_deliveries_total", **dead, result="failed") == 3
        assert _value(s, "ftpexport_deliveries_total", **dead, result="delivered") == 0
        assert _value(s, "ftpexport_bytes_sent_total", **dms) == delivered_bytes
        assert _value(s, "ftpexport_bytes_sent_total", **dead) == 0
        assert _value(s, "ftpexport_attempts_total", **dms, verdict="done") == 5
        assert _value(s, "ftpexport_attempts_total", **dead, verdict="failed") == 3
        assert _value(s, "ftpexport_attempt_duration_seconds_count", destination=DMS) == ledger_attempts[DMS] == 5
        assert _value(s, "ftpexport_attempt_duration_seconds_count", destination=DEAD) == ledger_attempts[DEAD] == 3
        assert _value(s, "ftpexport_attempt_duration_seconds_bucket", destination=DMS, le="+Inf") == 5

        assert _value(s, "ftpexport_queue_depth", destination=DMS) == 0
        assert _value(s, "ftpexport_queue_depth", destination=DEAD) == 2
        assert _value(s, "ftpexport_active_uploads", destination=DEAD) == 0
        assert _value(s, "ftpexport_breaker_state", destination=DMS) == 0
        assert _value(s, "ftpexport_breaker_state", destination=DEAD) == 1
        assert 0 < _value(s, "ftpexport_breaker_pause_seconds", destination=DEAD) <= 600
        assert _value(s, "ftpexport_breaker_trips", destination=DEAD) == 1

        # the age of the oldest pending delivery, bracketed by the ledger's created_at and the scrape
        oldest = min(
            datetime.fromisoformat(row["created_at"]).timestamp() for row in rows if row["status"] == "pending"
        )
        assert started - 1 <= oldest
        age = _value(s, "ftpexport_oldest_pending_age_seconds")
        assert before - oldest - 0.01 <= age <= after - oldest + 0.01

        assert _value(s, "ftpexport_up") == 1
        assert _value(s, "ftpexport_healthy") == 1
        assert _value(s, "ftpexport_stalled_attempts") == 0
        assert any(name == "ftpexport_build_info" and dict(labels)["version"] == __version__ for name, labels in s)
        assert before - 60 < _value(s, "ftpexport_watcher_last_tick_timestamp_seconds") <= after

        # a dead destination is not a health problem: its attempts end, the breaker holds them
        status, document = _health(base)
        assert status == 200, document
        assert document["failing"] == [] and document["checks"]["workers"]["running_attempts"] == 0

        _stop(daemon, base)


def test_healthz_turns_503_on_an_upload_stuck_without_progress_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer
) -> None:
    monkeypatch.setenv("METRICS_FTP_PASSWORD", ftp_server.password)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state = tmp_path / "ledger.sqlite3"
    with FaultProxy(ftp_server.host, ftp_server.port) as proxy:
        proxy.blackhole()  # accepts the connection, never says a word: the client waits its 600 s timeout
        url = f"ftp://{ftp_server.username}@{proxy.host}:{proxy.port}/dms"
        rules = _rules(tmp_path, _ftp_destination("dms", url, "timeout: 600"))

        # the port from the environment, as the container sets it
        daemon = start_watch(inbox, rules, state, "--health-stale", "1", env={"FTPEXPORT_METRICS_PORT": "0"})
        with daemon:
            base = _metrics_url(daemon)
            assert _health(base)[0] == 200
            make_record(inbox, 900, name="veh-stuck")

            eventually(lambda: _health(base)[0] == 503 or not daemon.alive(), "/healthz to report the stuck upload")
            status, document = _health(base)
            assert status == 503, document
            assert document["status"] == "unhealthy"
            assert document["failing"] == ["workers"]  # the watcher loop is fine
            [stalled] = document["checks"]["workers"]["stalled"]
            assert stalled["destination"] == DMS and stalled["record_id"] == "veh-stuck"
            assert stalled["bytes"] == 0 and stalled["seconds_without_progress"] >= 1
            assert DMS in document["checks"]["workers"]["error"]
            s = _scrape(base)
            assert _value(s, "ftpexport_active_uploads", destination=DMS) == 1
            assert _value(s, "ftpexport_stalled_attempts") == 1
            assert _value(s, "ftpexport_healthy") == 0

            # the connection is cut: the attempt fails, the retry goes through
            proxy.passthrough()
            proxy.cut_all()
            eventually(
                lambda: any(r["status"] == "delivered" for r in deliveries(state)) or not daemon.alive(),
                "the delivery after the cut",
            )
            eventually(lambda: _health(base)[0] == 200 or not daemon.alive(), "/healthz to recover")
            status, document = _health(base)
            assert status == 200 and document["status"] == "ok", document

            s = _scrape(base)
            labels = {"client": CLIENT, "destination": DMS}
            assert _value(s, "ftpexport_attempts_total", **labels, verdict="retry") == 1
            assert _value(s, "ftpexport_attempts_total", **labels, verdict="done") == 1
            assert _value(s, "ftpexport_deliveries_total", **labels, result="delivered") == 1
            assert _value(s, "ftpexport_stalled_attempts") == 0
            _stop(daemon, base)


def test_clients_of_the_metrics_port_never_hold_up_the_daemons_shutdown_nor_print_tracebacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICS_FTP_PASSWORD", "unused")
    rules = _rules(tmp_path, _ftp_destination("dms", f"ftp://acme@127.0.0.1:{closed_port()}/dms"))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = start_watch(inbox, rules, tmp_path / "ledger.sqlite3", "--metrics-port", "0", "--grace", "1")
    with daemon:
        base = _metrics_url(daemon)
        port = int(base.rpartition(":")[2])
        with BadClients("127.0.0.1", port) as clients:
            clients.silent(20)
            clients.half_request()
            clients.dripping()
            clients.never_reading()
            # answered after the others were accepted (one accept queue, in order): they all hold a thread now
            assert _health(base)[0] == 200

            daemon.terminate()
            # a liveness bound, not a measure: with --grace 1 and nothing uploading, stopping takes a moment
            assert daemon.wait(timeout=20) == 0, daemon.stderr
        assert "Traceback" not in daemon.stderr
        assert "Exception occurred" not in daemon.stderr
        assert daemon.logged("stopped"), daemon.stderr


def test_refused_records_are_counted_and_shown_until_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer
) -> None:
    monkeypatch.setenv("METRICS_FTP_PASSWORD", ftp_server.password)
    rules = _rules(tmp_path, _ftp_destination("dms", ftp_server.url("dms")))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state = tmp_path / "ledger.sqlite3"
    broken = make_record(inbox, 601, name="veh-r1")
    good_json = (broken / "vehicle.json").read_text()
    make_record(inbox, 602, name="veh-r2")
    (broken / "vehicle.json").write_text("{}")  # parses, but has no id, client or VIN
    (inbox / "veh-r2" / "vehicle.json").write_text(good_json.replace(CLIENT, "zulu-auto").replace("veh-r1", "veh-r2"))

    daemon = start_watch(inbox, rules, state, "--metrics-port", "0")
    with daemon:
        base = _metrics_url(daemon)

        def both_refused() -> bool:
            s = _scrape(base)
            return (
                _value(s, "ftpexport_refused_records", client="") == 1
                and _value(s, "ftpexport_refused_records", client="zulu-auto") == 1
            ) or not daemon.alive()

        eventually(both_refused, "the two refused records on /metrics")
        s = _scrape(base)
        assert _value(s, "ftpexport_records_refused_total", client="", kind="record") == 1
        assert _value(s, "ftpexport_records_refused_total", client="zulu-auto", kind="rules") == 1

        # fixed: delivered, and no longer refused; the counter keeps what happened
        (broken / "vehicle.json").write_text(good_json)
        eventually(
            lambda: _value(_scrape(base), "ftpexport_deliveries_total", client=CLIENT, destination=DMS,
                           result="delivered") == 1 or not daemon.alive(),
            "the fixed record delivered",
        )  # fmt: skip
        s = _scrape(base)
        assert _value(s, "ftpexport_refused_records", client="") == 0
        assert _value(s, "ftpexport_refused_records", client="zulu-auto") == 1
        assert _value(s, "ftpexport_records_refused_total", client="", kind="record") == 1
        _stop(daemon, base)

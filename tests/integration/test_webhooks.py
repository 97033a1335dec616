"""Client webhooks end to end: real exports to a real FTP server, webhooks to a real HTTPS server.

The receiver checks every signature with ``standardwebhooks`` (the specification authors' own
implementation, not ours). Covered: payloads equal to the ledger, delivered and failed events,
retries with the same webhook-id, a hanging endpoint that never holds up an upload, loopback
refused without ``allow_private``, pending notifications sent by the next process, the secret
never written anywhere, and ``ftpexport run`` with the secret in the encrypted store.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from certificates import TLSFiles, make_tls_files
from cli_runner import invoke
from click.testing import Result
from daemons import HOST
from faults import closed_port
from polling import eventually
from processes import ExporterProcess
from pydantic import SecretStr
from records import make_record
from rulefiles import ftp_destination, rule_document, write_rules
from servers import RunningServer
from standardwebhooks import Webhook

from ftpexport.events import Summary
from ftpexport.ledger import Ledger, open_ledger
from ftpexport.logs import JsonFormatter
from ftpexport.pipeline import Exporter, Options
from ftpexport.rules import load_rules
from ftpexport.vault import SecretsStore, generate_key, write_private
from ftpexport.webhooks import Notifier, NotifySettings, encode

pytestmark = pytest.mark.integration

PASSWORD_ENV = "WEBHOOK_TEST_FTP_PASSWORD"
SECRET_NAME = "acme-webhook"
#: quick retries: the tests check how often and in which order, never how long
FAST = NotifySettings(backoff=0.01, max_backoff=0.05, attempts=5, poll=0.5, close_wait=30.0)


# --- the receiving end: a real HTTPS server on 127.0.0.1


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTPS endpoint: records every POST, answers the scripted status codes (then 200), or hangs."""

    url: str
    ca_file: Path
    requests: list[Received] = field(default_factory=list)
    #: status codes for the next requests, in order; 200 once they run out
    answers: list[int] = field(default_factory=list)
    #: hold every request without answering until ``release`` is set
    hang: bool = False
    #: answer one header byte at a time, forever (until ``release`` or the client hangs up)
    drip: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, request: Received) -> int | None:
        with self.lock:
            self.requests.append(request)
            self.arrived.set()
            if self.hang or self.drip:
                return None
            return self.answers.pop(0) if self.answers else 200

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every request's payload, each checked against its signature by standardwebhooks."""
        with self.lock:
            requests = list(self.requests)
        return [Webhook(secret).verify(r.body, r.headers) for r in requests]


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close joins the request threads: nothing outlives the test

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a request the notifier cut (hanging endpoint): not the test's business


@contextlib.contextmanager
def https_receiver(tls: TLSFiles, host: str = HOST) -> Iterator[Receiver]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver = holder[0]
            status = receiver.take(Received(self.path, dict(self.headers.items()), body))
            if status is None and receiver.drip:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not receiver.release.wait(0.05):
                    self.wfile.write(b"z")
                    self.wfile.flush()
                return
            if status is None:
                receiver.release.wait(timeout=60)
                return
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/hooks/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Server((HOST, 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    holder.append(Receiver(f"https://{host}:{server.server_address[1]}/hooks/acme", tls.ca_file))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-receiver")
    thread.start()
    try:
        yield holder[0]
    finally:
        holder[0].release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    folder = tmp_path / "tls"
    folder.mkdir()
    return make_tls_files(folder)


@pytest.fixture
def receiver(tls: TLSFiles) -> Iterator[Receiver]:
    with https_receiver(tls) as running:
        yield running


# --- the sending end


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Setup:
    inbox: Path
    rules_dir: Path
    state: Path
    store: SecretsStore
    secret: str
    #: the store's key, for a key file when ftpexport runs as a command
    key: SecretStr


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ftp_server: RunningServer) -> Setup:
    monkeypatch.setenv(PASSWORD_ENV, ftp_server.password)
    key = generate_key()
    store = SecretsStore(tmp_path / "secrets.enc", key)
    store.create()
    secret = new_secret()
    store.set(SECRET_NAME, SecretStr(secret))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return Setup(inbox, tmp_path / "rules", tmp_path / "state" / "ledger.sqlite3", store, secret, key)


def notify_block(receiver: Receiver, path: str = "/hooks/acme", **extra: Any) -> dict[str, Any]:
    """A notify block to the receiver (on 127.0.0.1: allow_private), the secret from the store."""
    base = receiver.url.rsplit("/hooks/", 1)[0]
    return {
        "url": base + path,
        "secret": "${secret:" + SECRET_NAME + "}",
        "allow_private": True,
        "ca_file": str(receiver.ca_file),
        "timeout": 5,
        **extra,
    }


def ftp_to(server: RunningServer, folder: str = "photos", **extra: Any) -> dict[str, Any]:
    return ftp_destination("dms", server, folder, PASSWORD_ENV, **extra)


@contextlib.contextmanager
def notifying(setup: Setup, settings: NotifySettings = FAST, **kwargs: Any) -> Iterator[tuple[Ledger, Notifier]]:
    """A ledger and a notifier for one process; the notifier is closed (``close_wait``) before the ledger."""
    ruleset = load_rules(setup.rules_dir)
    assert not ruleset.errors, ruleset.errors
    with (
        open_ledger(setup.state) as ledger,
        Notifier(ledger, ruleset, setup.store, settings, **kwargs) as notifier,
    ):
        yield ledger, notifier


def export(setup: Setup, ledger: Ledger, notifier: Notifier, folders: list[Path]) -> Summary:
    """One batch export (like ``ftpexport run``) that tells the notifier."""
    options = Options(backoff=0.01, retries=0, spool_dir=setup.state.parent / "spool")
    ruleset = load_rules(setup.rules_dir)
    with Exporter(ruleset, ledger, options, observers=[notifier], secrets=setup.store) as exporter:
        return exporter.export(folders)


def notifications(setup: Setup) -> list[dict[str, Any]]:
    with open_ledger(setup.state) as ledger:
        return ledger.notifications()


# --- the tests


def test_delivered_and_failed_vehicles_are_posted_signed_and_equal_to_the_ledger(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer
) -> None:
    write_rules(
        setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver, "/hooks/acme"))
    )
    # bravo's server is down and it allows no retry: its vehicle fails for good
    down = ftp_to(ftp_server, port=closed_port())
    write_rules(
        setup.rules_dir,
        rule_document(
            "bravo", [down], notify=notify_block(receiver, "/hooks/bravo?source=ftpexport"), upload={"retries": 0}
        ),
    )
    folders = [make_record(setup.inbox, 1, "acme"), make_record(setup.inbox, 2, "acme"),
               make_record(setup.inbox, 3, "bravo")]  # fmt: skip

    with notifying(setup) as (ledger, notifier):
        summary = export(setup, ledger, notifier, folders)
        assert sorted(o.result for o in summary.outcomes) == ["delivered", "delivered", "failed"]
        notifier.close()  # lets the due notifications go out
        deliveries = {d.record_id: d for d in ledger.deliveries()}
        rows = {row["webhook_id"]: row for row in ledger.notifications()}

    payloads = receiver.verified(setup.secret)  # raises unless every signature is right
    assert len(payloads) == 3
    by_record = {p["data"]["record_id"]: (p, r) for p, r in zip(payloads, receiver.requests, strict=True)}
    assert set(by_record) == {"veh-000001", "veh-000002", "veh-000003"}

    for record_id in ("veh-000001", "veh-000002"):
        document, request = by_record[record_id]
        delivery = deliveries[record_id]
        assert request.path == "/hooks/acme"
        assert request.headers["Content-Type"] == "application/json"
        assert document == {
            "type": "vehicle.delivered",
            "timestamp": delivery.delivered_at,
            "data": {
                "record_id": record_id,
                "vin": delivery.vin,
                "client_id": "acme",
                "user_id": delivery.user_id,
                "destination": "acme/dms",
                "remote_paths": list(delivery.remote_paths),
                "bytes": delivery.bytes,
                "delivered_at": delivery.delivered_at,
                "attempts": 1,
                "correlation_id": delivery.correlation_id,
            },
        }
        assert delivery.remote_paths == (f"photos/{delivery.vin}.zip",)
        assert delivery.bytes == (ftp_server.root / "photos" / f"{delivery.vin}.zip").stat().st_size > 0
        assert delivery.correlation_id
        row = rows[request.headers["webhook-id"]]
        assert (row["status"], row["attempts"], row["response_code"], row["event"]) == (
            "sent", 1, 200, "vehicle.delivered"
        )  # fmt: skip
        assert (row["delivery_id"], row["correlation_id"]) == (delivery.id, delivery.correlation_id)
        assert row["payload"].encode() == request.body

    document, request = by_record["veh-000003"]
    failed = deliveries["veh-000003"]
    assert failed.status == "failed"
    assert request.path == "/hooks/bravo?source=ftpexport"
    assert document["type"] == "vehicle.failed"
    data = document["data"]
    assert (data["client_id"], data["destination"], data["vin"]) == ("bravo", "bravo/dms", failed.vin)
    assert (data["remote_paths"], data["bytes"], data["attempts"]) == ([], 0, 1)
    assert data["error"] == failed.last_error and "refused" in data["error"]
    assert data["failed_at"] == document["timestamp"] == failed.updated_at
    assert data["correlation_id"] == failed.correlation_id
    assert rows[request.headers["webhook-id"]]["status"] == "sent"


def test_an_endpoint_answering_500_twice_gets_three_attempts_with_the_same_webhook_id(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer
) -> None:
    receiver.answers = [500, 500]
    write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver)))

    with notifying(setup) as (ledger, notifier):
        export(setup, ledger, notifier, [make_record(setup.inbox, 1, "acme")])
        # close waits for the retries: they are due well within close_wait

    assert len(receiver.verified(setup.secret)) == 3
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1
    assert len({r.body for r in receiver.requests}) == 1  # the same stored body every time
    [row] = notifications(setup)
    assert (row["webhook_id"], row["status"], row["attempts"], row["response_code"]) == (ids.pop(), "sent", 3, 200)
    assert row["last_error"] is None and row["sent_at"]


def test_a_notification_whose_attempts_run_out_is_failed_with_the_last_answer(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer
) -> None:
    receiver.answers = [503, 500, 500]
    write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver)))
    settings = NotifySettings(backoff=0.01, max_backoff=0.05, attempts=3, poll=0.5, close_wait=30.0)

    with notifying(setup, settings) as (ledger, notifier):
        summary = export(setup, ledger, notifier, [make_record(setup.inbox, 1, "acme")])

    assert [o.result for o in summary.outcomes] == ["delivered"]  # the webhook changes nothing for the upload
    assert len(receiver.verified(setup.secret)) == 3
    [row] = notifications(setup)
    assert (row["status"], row["attempts"], row["response_code"]) == ("failed", 3, 500)
    assert "the endpoint answered 500" in row["last_error"]


def test_a_hanging_endpoint_never_holds_up_an_upload_and_the_next_process_sends_what_is_pending(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer
) -> None:
    receiver.hang = True
    write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver)))
    first = make_record(setup.inbox, 1, "acme")
    later = [make_record(setup.inbox, n, "acme") for n in (2, 3, 4)]

    with notifying(setup) as (ledger, notifier):
        assert [o.result for o in export(setup, ledger, notifier, [first]).outcomes] == ["delivered"]
        assert receiver.arrived.wait(timeout=30), "the first webhook never arrived"
        # the notifier is stuck in a request that will never be answered: uploads go on regardless
        summary = export(setup, ledger, notifier, later)
        assert [o.result for o in summary.outcomes] == ["delivered"] * 3
        assert {d.status for d in ledger.deliveries()} == {"delivered"}
        rows = ledger.notifications()
        assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0)] * 4
        assert len(receiver.requests) == 1  # one request at a time per endpoint: the others wait their turn
        notifier.close(wait=0)  # stop now: the hanging request is cut, everything stays pending

    rows = notifications(setup)
    assert [r["status"] for r in rows] == ["pending"] * 4
    assert rows[0]["attempts"] == 1 and "interrupted" in rows[0]["last_error"]
    assert [r["attempts"] for r in rows[1:]] == [0, 0, 0]

    # the next process (a new run, a restarted watch) sends what the ledger holds
    receiver.hang = False
    receiver.release.set()
    with notifying(setup) as (ledger, notifier):
        pass  # nothing new to export: close() waits for the pending notifications

    rows = notifications(setup)
    assert [(r["status"], r["response_code"]) for r in rows] == [("sent", 200)] * 4
    payloads = receiver.verified(setup.secret)
    assert sorted(p["data"]["record_id"] for p in payloads[1:]) == [f"veh-00000{n}" for n in (1, 2, 3, 4)]
    assert {r.headers["webhook-id"] for r in receiver.requests} == {r["webhook_id"] for r in rows}


def test_loopback_is_refused_without_allow_private(setup: Setup, tls: TLSFiles, ftp_server: RunningServer) -> None:
    # "localhost" passes the rule file (a name, not an address); it resolves to loopback at send time
    with https_receiver(tls, host="localhost") as receiver:
        assert receiver.url.startswith("https://localhost:")
        block = notify_block(receiver)
        del block["allow_private"]
        write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=block))

        with notifying(setup) as (ledger, notifier):
            summary = export(setup, ledger, notifier, [make_record(setup.inbox, 1, "acme")])

        assert [o.result for o in summary.outcomes] == ["delivered"]
        assert receiver.requests == []
    [row] = notifications(setup)
    assert (row["status"], row["attempts"], row["response_code"]) == ("failed", 1, None)
    assert "refused: host localhost resolves to" in row["last_error"]
    assert "loopback" in row["last_error"]
    assert "allow_private: true" in row["last_error"]


def test_the_same_endpoint_with_allow_private_receives_it(
    setup: Setup, tls: TLSFiles, ftp_server: RunningServer
) -> None:
    with https_receiver(tls, host="localhost") as receiver:
        write_rules(
            setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver))
        )  # allow_private: true
        with notifying(setup) as (ledger, notifier):
            export(setup, ledger, notifier, [make_record(setup.inbox, 1, "acme")])
        assert len(receiver.verified(setup.secret)) == 1
    assert [r["status"] for r in notifications(setup)] == ["sent"]


def test_the_request_goes_to_the_checked_address_with_the_host_name_for_tls_and_host(
    setup: Setup, tmp_path: Path, ftp_server: RunningServer
) -> None:
    # a name no DNS knows: only the notifier's own (single) lookup can find the address
    folder = tmp_path / "named-tls"
    folder.mkdir()
    looked_up: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        looked_up.append((host, port))
        return [HOST]

    with https_receiver(make_tls_files(folder, names=("hooks.acme.test",)), host="hooks.acme.test") as receiver:
        write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver)))
        with notifying(setup, resolver=resolver) as (ledger, notifier):
            export(setup, ledger, notifier, [make_record(setup.inbox, 1, "acme")])
        assert len(receiver.verified(setup.secret)) == 1
        port = int(receiver.url.split(":")[2].split("/")[0])

    [request] = receiver.requests
    assert request.headers["Host"] == f"hooks.acme.test:{port}"  # the certificate was checked for this name too
    assert looked_up == [("hooks.acme.test", port)]
    assert [r["status"] for r in notifications(setup)] == ["sent"]


def test_a_redirect_is_not_followed(setup: Setup, receiver: Receiver, ftp_server: RunningServer) -> None:
    receiver.answers = [302]
    write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver)))
    settings = NotifySettings(backoff=0.01, max_backoff=0.05, attempts=1, poll=0.5, close_wait=30.0)

    with notifying(setup, settings) as (ledger, notifier):
        export(setup, ledger, notifier, [make_record(setup.inbox, 1, "acme")])

    assert [r.path for r in receiver.requests] == ["/hooks/acme"]  # never /hooks/elsewhere
    [row] = notifications(setup)
    assert (row["status"], row["attempts"], row["response_code"]) == ("failed", 1, 302)
    assert "redirects are not followed" in row["last_error"]


def test_an_endpoint_certificate_from_an_unknown_ca_is_refused(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer
) -> None:
    block = notify_block(receiver)
    del block["ca_file"]  # the system CAs do not know the test CA
    write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=block))
    settings = NotifySettings(backoff=0.01, max_backoff=0.05, attempts=1, poll=0.5, close_wait=30.0)

    with notifying(setup, settings) as (ledger, notifier):
        export(setup, ledger, notifier, [make_record(setup.inbox, 1, "acme")])

    assert receiver.requests == []
    [row] = notifications(setup)
    assert row["status"] == "failed"
    assert "TLS certificate refused" in row["last_error"] and "set notify.ca_file" in row["last_error"]


def test_an_endpoint_that_answers_too_slowly_is_cut(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer
) -> None:
    receiver.drip = True  # a byte every 50 ms: never idle long enough for the socket timeout
    write_rules(
        setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver, timeout=0.3))
    )
    settings = NotifySettings(backoff=0.01, max_backoff=0.05, attempts=1, poll=0.1, close_wait=30.0)

    with notifying(setup, settings) as (ledger, notifier):
        export(setup, ledger, notifier, [make_record(setup.inbox, 1, "acme")])

    assert len(receiver.requests) == 1
    [row] = notifications(setup)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "no complete answer within 0.9 s; the request was cut" in row["last_error"]


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every ftpexport log line of the test, as JSON lines, at debug level."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ftpexport")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_webhook_secret_is_never_written_to_the_ledger_or_the_logs(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer, captured_logs: io.StringIO
) -> None:
    receiver.answers = [500, 400]  # a retry, logged with its error, then sent
    write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver)))
    key = base64.b64decode(setup.secret.removeprefix("whsec_"))

    with notifying(setup) as (ledger, notifier):
        export(setup, ledger, notifier, [make_record(setup.inbox, 1, "acme")])

    assert [r["status"] for r in notifications(setup)] == ["sent"]
    logs = captured_logs.getvalue()
    assert "webhook sent" in logs and "webhook attempt failed" in logs
    for line in logs.splitlines():
        entry = json.loads(line)
        if entry["message"].startswith("webhook"):
            assert entry["correlation_id"], entry  # every webhook log line carries the delivery's correlation id
    written = b"".join(p.read_bytes() for p in setup.state.parent.iterdir() if p.is_file())
    for needle in (setup.secret, setup.secret.removeprefix("whsec_")):
        assert needle not in logs
        assert needle.encode() not in written
        assert all(needle.encode() not in r.body and needle not in str(r.headers) for r in receiver.requests)
    assert key not in written


def test_ftpexport_run_posts_the_webhook_with_the_secret_from_the_store(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "store.key"
    store = SecretsStore(tmp_path / "cli-secrets.enc", key := generate_key())
    store.create()
    store.set(SECRET_NAME, SecretStr(setup.secret))
    write_private(key_file, key.get_secret_value().encode() + b"\n")
    write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver)))
    make_record(setup.inbox, 1, "acme")

    result = invoke(
        "--secrets",
        store.path,
        "--secrets-key-file",
        key_file,
        "run",
        setup.inbox,
        "--rules",
        setup.rules_dir,
        "--state",
        setup.state,
        "--json",
        "--notify-wait",
        "30",
    )

    assert result.exit_code == 0, result.output
    assert setup.secret not in result.output
    [document] = receiver.verified(setup.secret)
    assert (document["type"], document["data"]["record_id"]) == ("vehicle.delivered", "veh-000001")
    [row] = notifications(setup)
    assert (row["status"], row["attempts"], row["response_code"]) == ("sent", 1, 200)
    with open_ledger(setup.state) as ledger:
        [delivery] = ledger.deliveries()
    assert document["data"]["correlation_id"] == delivery.correlation_id == row["correlation_id"]


def test_watch_sends_what_an_earlier_process_left_pending_then_each_new_vehicle(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "store.key"
    write_private(key_file, setup.key.get_secret_value().encode() + b"\n")
    write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver)))
    setup.state.parent.mkdir(parents=True)
    with open_ledger(setup.state) as ledger:  # a notification a killed run left in the outbox
        ledger.add_notification(
            webhook_id="msg_left_by_an_earlier_run", delivery_id=None, client_id="acme", event="vehicle.delivered",
            url=receiver.url, payload=encode({"type": "vehicle.delivered", "data": {"record_id": "veh-earlier"}}),
            correlation_id="c-earlier",
        )  # fmt: skip

    with ExporterProcess(
        "--secrets", setup.store.path, "--secrets-key-file", key_file, "--log-format", "json", "watch", setup.inbox,
        "--rules", setup.rules_dir, "--state", setup.state, "--settle", "0.1",
    ) as daemon:  # fmt: skip
        eventually(lambda: receiver.requests or not daemon.alive(), "the pending notification")
        make_record(setup.inbox, 1, "acme")
        eventually(lambda: len(receiver.requests) >= 2 or not daemon.alive(), "the new vehicle's notification")
        daemon.terminate()
        assert daemon.wait() == 0, daemon.stderr

    payloads = receiver.verified(setup.secret)
    assert [p["data"]["record_id"] for p in payloads] == ["veh-earlier", "veh-000001"]
    assert receiver.requests[0].headers["webhook-id"] == "msg_left_by_an_earlier_run"
    assert [(r["status"], r["correlation_id"] is not None) for r in notifications(setup)] == [("sent", True)] * 2
    with open_ledger(setup.state) as ledger:
        [delivery] = ledger.deliveries()
    assert [e["correlation_id"] for e in daemon.logged("webhook sent")] == ["c-earlier", delivery.correlation_id]
    assert setup.secret not in daemon.stderr + daemon.stdout


def test_watch_notifies_under_the_rules_it_reloaded(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer, tmp_path: Path
) -> None:
    """The exporter and the notifier of the daemon hold the same rules: a notify block changed while
    it runs is used for the next vehicle (not the one it knew at startup)."""
    key_file = tmp_path / "keys" / "store.key"
    write_private(key_file, setup.key.get_secret_value().encode() + b"\n")
    write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver)))

    with ExporterProcess(
        "--secrets", setup.store.path, "--secrets-key-file", key_file, "--log-format", "json", "watch", setup.inbox,
        "--rules", setup.rules_dir, "--state", setup.state, "--settle", "0.1",
    ) as daemon:  # fmt: skip
        make_record(setup.inbox, 1, "acme")
        eventually(lambda: receiver.requests or not daemon.alive(), "the first vehicle's notification")
        write_rules(
            setup.rules_dir,
            rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver, path="/hooks/reloaded")),
        )
        eventually(lambda: daemon.logged("rules reloaded") or not daemon.alive(), "the rules reloaded")
        make_record(setup.inbox, 2, "acme")
        eventually(lambda: len(receiver.requests) >= 2 or not daemon.alive(), "the second vehicle's notification")
        daemon.terminate()
        assert daemon.wait() == 0, daemon.stderr

    payloads = receiver.verified(setup.secret)
    assert [p["data"]["record_id"] for p in payloads] == ["veh-000001", "veh-000002"]
    assert [r.path for r in receiver.requests] == ["/hooks/acme", "/hooks/reloaded"]


# --- run and status: a secret that does not resolve, what run waits for, what status shows

SECRET_ENV = "WEBHOOK_TEST_SECRET_NOT_SET"


def _run(setup: Setup, *options: str | Path) -> Result:
    args = ["run", setup.inbox, "--rules", setup.rules_dir, "--state", setup.state, *options]
    return invoke(*args)


def _status(setup: Setup, *options: str) -> Result:
    return invoke("status", "--state", setup.state, *options)


def test_run_fails_a_notification_whose_secret_does_not_resolve_at_once_and_status_shows_it(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    write_rules(
        setup.rules_dir,
        rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver, secret="${" + SECRET_ENV + "}")),
    )
    make_record(setup.inbox, 1, "acme")
    make_record(setup.inbox, 2, "acme")

    result = _run(setup)  # the default --notify-wait (10 s): a retried notification would be tried again within it

    assert result.exit_code == 0, result.output  # the uploads are done; the webhooks are a separate matter
    rows = notifications(setup)
    assert [(r["status"], r["attempts"], r["response_code"]) for r in rows] == [("failed", 1, None)] * 2
    reason = f"notify.secret: environment variable {SECRET_ENV} is not set (export {SECRET_ENV}=... in the environment"
    assert all(f"{setup.rules_dir / 'acme.yaml'}: {reason}" in r["last_error"] for r in rows)
    assert receiver.requests == []
    assert reason in result.stderr  # "webhook failed for good", with the reason
    assert "left pending" not in result.stderr

    text = _status(setup)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    table = lines[lines.index("webhook notifications not sent:") + 1 :]
    assert table[0].split() == ["client", "endpoint", "pending", "failed", "oldest", "pending"]
    assert table[2].split() == ["acme", receiver.url, "0", "2", "-"]
    assert any(line.startswith("  acme  at ") and reason in line for line in table)

    [entry] = json.loads(_status(setup, "--json").stdout)["notifications"]
    assert (entry["client_id"], entry["url"], entry["pending"], entry["failed"]) == ("acme", receiver.url, 0, 2)
    assert reason in entry["last_error"] and entry["oldest_pending"] is None


def test_run_says_what_it_waits_for_at_its_end_and_status_shows_what_it_left_pending(
    setup: Setup, receiver: Receiver, ftp_server: RunningServer, tmp_path: Path
) -> None:
    receiver.hang = True  # the endpoint takes the request and never answers (the request times out after 5 s)
    key_file = tmp_path / "keys" / "store.key"
    write_private(key_file, setup.key.get_secret_value().encode() + b"\n")
    write_rules(setup.rules_dir, rule_document("acme", [ftp_to(ftp_server)], notify=notify_block(receiver)))
    make_record(setup.inbox, 1, "acme")

    result = invoke(
        "--secrets",
        setup.store.path,
        "--secrets-key-file",
        key_file,
        "run",
        setup.inbox,
        "--rules",
        setup.rules_dir,
        "--state",
        setup.state,
        "--notify-wait",
        "4",
    )

    assert result.exit_code == 0, result.output
    host = receiver.url.split("/")[2]
    assert f"waiting up to 4 s for 1 webhook notification to acme ({host})\n" in result.stderr
    assert "1 webhook notification(s) left pending; the next run or watch sends them\n" in result.stderr
    [row] = notifications(setup)
    assert (row["status"], row["attempts"]) == ("pending", 1)

    [entry] = json.loads(_status(setup, "--json").stdout)["notifications"]
    assert (entry["client_id"], entry["url"], entry["pending"], entry["failed"]) == ("acme", receiver.url, 1, 0)
    assert entry["oldest_pending"] == row["created_at"] and entry["oldest_pending_age_seconds"] >= 0
    assert "interrupted, ftpexport stopped" in entry["last_error"]
    text = _status(setup).stdout
    assert "webhook notifications not sent:" in text and "interrupted, ftpexport stopped" in text
    # quiet: not a word about it
    quiet = invoke(
        "--secrets",
        setup.store.path,
        "--secrets-key-file",
        key_file,
        "-q",
        "run",
        setup.inbox,
        "--rules",
        setup.rules_dir,
        "--state",
        setup.state,
        "--notify-wait",
        "1.5",
    )
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.output

"""webhooks/ and the notify block of the rules: signatures (checked by standardwebhooks), rule-file
validation, the payload and send-time refusals (no network); the SSRF address policy is in
test_netguard.py, the backoff between attempts in test_dispatch.py (backoff_delay)."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ftpexport.errors import ConfigError
from ftpexport.events import Outcome
from ftpexport.ledger import Ledger, open_ledger
from ftpexport.rules import (
    ClientRules,
    RuleSet,
    read_rule_file,
    rule_warnings,
    secret_references,
)
from ftpexport.webhooks import (
    Notifier,
    NotifySettings,
    encode,
    endpoint,
    payload,
    sign,
    signing_key,
    waiting_message,
    webhook_headers,
)

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
SECRET_ENV = "NOTIFY_TEST_WEBHOOK_SECRET"


# --- signing, checked by the specification authors' implementation


def test_the_signature_verifies_with_standardwebhooks() -> None:
    body = encode({"type": "vehicle.delivered", "data": {"user": "Marc Lefèvre", "bytes": 15504}}).encode()
    headers = webhook_headers(signing_key(SecretStr(SECRET), "here"), "msg_abc", body)

    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    assert headers["webhook-id"] == "msg_abc"
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["Content-Type"] == "application/json"


def test_a_changed_body_id_or_secret_fails_verification() -> None:
    body = b'{"type":"vehicle.delivered"}'
    headers = webhook_headers(signing_key(SecretStr(SECRET), "here"), "msg_abc", body)
    other_secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"type":"vehicle.failed"}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, {**headers, "webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(other_secret).verify(body, headers)


def test_the_signature_of_the_specification_test_vector() -> None:
    # the example of the Standard Webhooks reference libraries
    key = signing_key(SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "here")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "does not start with whsec_"),
        ("whsec_not*base64*at-all!", "is not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "holds 5 bytes, not 24 to 64"),
    ],
)
def test_a_malformed_webhook_secret_is_refused_without_showing_it(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        signing_key(SecretStr(value), "rules/acme.yaml: notify.secret")

    assert reason in str(caught.value)
    assert "rules/acme.yaml: notify.secret" in str(caught.value)
    assert value.removeprefix("whsec_") not in str(caught.value)


# --- the notify block of a rule file


def rules(notify: dict[str, Any] | None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "client_id": "acme",
        "destinations": [{"name": "dms", "url": "ftps://acme@ftps.example/photos", "password": "${ACME_FTPS}"}],
    }
    if notify is not None:
        document["notify"] = notify
    return document


def load(tmp_path: Path, document: dict[str, Any]) -> ClientRules | list[str]:
    path = tmp_path / "rules" / "acme.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = read_rule_file(path)
    return result if isinstance(result, ClientRules) else [str(e) for e in result]


def test_a_notify_block_with_its_defaults(tmp_path: Path) -> None:
    loaded = load(tmp_path, rules({"url": "https://hooks.acme.example/ftpexport", "secret": "${secret:acme-hook}",
                                   "ca_file": "certs/ca.pem"}))  # fmt: skip

    assert isinstance(loaded, ClientRules) and loaded.notify is not None
    notify = loaded.notify
    assert (notify.host, notify.port, notify.allow_private, notify.timeout) == ("hooks.acme.example", 443, False, 10.0)
    assert notify.events == ["vehicle.delivered", "vehicle.failed"]
    assert notify.secret.store_name == "acme-hook"
    assert notify.ca_file == tmp_path / "rules" / "certs" / "ca.pem"  # relative to the rule file
    assert ("notify: secret", notify.secret) in secret_references(loaded)


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        ({"url": "http://hooks.example/x", "secret": "${S}"}, "notify.url: must be an https:// URL"),
        ({"url": "https://u:p@hooks.example/x", "secret": "${S}"}, "notify.url: the URL holds a user name or password"),
        ({"url": "https:///x", "secret": "${S}"}, "notify.url: the URL has no host name"),
        ({"url": "https://hooks.example/x", "secret": SECRET}, "notify.secret: must be a reference"),
        ({"url": "https://hooks.example/x"}, "notify.secret: Field required"),
        ({"url": "https://hooks.example/x", "secret": "${S}", "events": ["vehicle.sold"]}, "notify.events[0]"),
        ({"url": "https://hooks.example/x", "secret": "${S}", "events": []}, "notify.events"),
        ({"url": "https://hooks.example/x", "secret": "${S}", "retries": 3}, "notify.retries: unknown key"),
        ({"url": "https://127.0.0.1:8443/x", "secret": "${S}"}, "127.0.0.1 is a loopback address"),
        ({"url": "https://169.254.169.254/latest", "secret": "${S}"}, "169.254.169.254 is a link-local"),
        ({"url": "https://[::1]/x", "secret": "${S}"}, "::1 is a loopback address"),
        ({"url": "https://10.20.30.40/x", "secret": "${S}"}, "10.20.30.40 is a private address"),
        ({"url": "https://2130706433/x", "secret": "${S}"}, "2130706433 is a loopback address"),
    ],
)
def test_a_bad_notify_block_is_a_rule_file_error(tmp_path: Path, notify: dict[str, Any], expected: str) -> None:
    errors = load(tmp_path, rules(notify))

    assert isinstance(errors, list), "the rule file loaded"
    assert any(expected in e for e in errors), errors
    assert all(SECRET.removeprefix("whsec_") not in e for e in errors)


def test_a_private_ip_literal_error_says_what_to_set(tmp_path: Path) -> None:
    [error] = load(tmp_path, rules({"url": "https://192.168.1.20/hook", "secret": "${S}"}))

    assert "notify" in error and "set allow_private: true" in error


def test_allow_private_accepts_a_private_address(tmp_path: Path) -> None:
    loaded = load(tmp_path, rules({"url": "https://127.0.0.1:8443/x", "secret": "${S}", "allow_private": True}))

    assert isinstance(loaded, ClientRules) and loaded.notify is not None and loaded.notify.allow_private


def test_check_warns_about_allow_private_and_a_missing_ca_file(tmp_path: Path) -> None:
    loaded = load(tmp_path, rules({"url": "https://hooks.lan/x", "secret": "${S}", "allow_private": True,
                                   "ca_file": "missing-ca.pem"}))  # fmt: skip

    assert isinstance(loaded, ClientRules)
    warnings = rule_warnings(loaded)
    assert "notify: allow_private is set: the webhook may go to private and loopback addresses" in warnings
    assert f"notify: file {tmp_path / 'rules' / 'missing-ca.pem'} does not exist (yet)" in warnings


# --- the payload


def outcome(result: str, **extra: Any) -> Outcome:
    values: dict[str, Any] = {
        "record_id": "veh-1", "record_path": "/inbox/veh-1", "client_id": "acme", "destination": "acme/dms",
        "result": result, "correlation_id": "c0ffee", "attempts": 2, "vin": "WVWZZZ1JZXW000001",
        "user_id": "u-42", "finished_at": "2026-11-20T13:05:01.123+00:00", **extra,
    }  # fmt: skip
    return Outcome(**values)


def test_the_payload_of_a_delivered_vehicle() -> None:
    document = payload(outcome("delivered", remote_paths=("in/WVWZZZ1JZXW000001.zip",), bytes=15504))

    assert document == {
        "type": "vehicle.delivered",
        "timestamp": "2026-11-20T13:05:01.123+00:00",
        "data": {
            "record_id": "veh-1",
            "vin": "WVWZZZ1JZXW000001",
            "client_id": "acme",
            "user_id": "u-42",
            "destination": "acme/dms",
            "remote_paths": ["in/WVWZZZ1JZXW000001.zip"],
            "bytes": 15504,
            "delivered_at": "2026-11-20T13:05:01.123+00:00",
            "attempts": 2,
            "correlation_id": "c0ffee",
        },
    }


def test_the_payload_of_a_failed_vehicle_has_the_error_and_nothing_delivered() -> None:
    document = payload(outcome("failed", error="destination refused the login", bytes=10))

    assert document["type"] == "vehicle.failed"
    data = document["data"]
    assert (data["failed_at"], data["error"], data["remote_paths"], data["bytes"]) == (
        "2026-11-20T13:05:01.123+00:00", "destination refused the login", [], 0
    )  # fmt: skip
    assert "delivered_at" not in data


# --- the notifier, without network: what it queues and what it refuses


@contextmanager
def notifier_for(
    tmp_path: Path, notify: dict[str, Any] | None, resolver: Any = None, **settings: Any
) -> Iterator[tuple[Ledger, Notifier, RuleSet]]:
    loaded = load(tmp_path, rules(notify))
    assert isinstance(loaded, ClientRules), loaded
    ruleset = RuleSet(directory=tmp_path / "rules", clients={"acme": loaded})
    options = NotifySettings(**{"backoff": 0.01, "max_backoff": 0.02, "poll": 0.2, "close_wait": 10.0, **settings})
    kwargs = {"resolver": resolver} if resolver else {}
    with (
        open_ledger(tmp_path / "ledger.sqlite3") as ledger,
        Notifier(ledger, ruleset, None, options, **kwargs) as n,
    ):
        yield ledger, n, ruleset


def test_only_delivered_and_failed_outcomes_of_the_chosen_events_are_queued(tmp_path: Path) -> None:
    notify = {"url": "https://hooks.example/x", "secret": "${" + SECRET_ENV + "}", "events": ["vehicle.failed"]}
    with notifier_for(tmp_path, notify, resolver=lambda host, port: ["10.9.9.9"]) as (ledger, notifier, _):
        for result in ("delivered", "skipped", "unchanged", "parked", "deferred", "failed"):
            notifier.outcome(outcome(result))
        notifier.outcome(outcome("failed", client_id="bravo"))  # no rule file, no notify block
        rows = ledger.notifications()

    assert [(r["event"], r["client_id"], r["correlation_id"]) for r in rows] == [("vehicle.failed", "acme", "c0ffee")]
    assert json.loads(rows[0]["payload"]) == payload(outcome("failed"))
    assert rows[0]["webhook_id"].startswith("msg_")


def test_a_host_resolving_to_a_private_address_is_refused_at_send_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    looked_up: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        looked_up.append((host, port))
        return ["93.184.216.34", "169.254.169.254"]

    notify = {"url": "https://hooks.example:8443/x", "secret": "${" + SECRET_ENV + "}"}
    with notifier_for(tmp_path, notify, resolver=resolver) as (ledger, notifier, _):
        notifier.outcome(outcome("delivered"))
        notifier.close()
        [row] = ledger.notifications()

    assert looked_up == [("hooks.example", 8443)]
    assert (row["status"], row["attempts"], row["response_code"]) == ("failed", 1, None)
    assert "hooks.example resolves to 169.254.169.254, a link-local (cloud metadata) address" in row["last_error"]
    assert "set allow_private: true in the notify block" in row["last_error"]


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, f"environment variable {SECRET_ENV} is not set (export {SECRET_ENV}=... in the environment"),
        ("not-a-webhook-secret", "the webhook secret does not start with whsec_ (store a secret of the form"),
    ],
)
def test_a_secret_that_cannot_resolve_fails_the_notification_at_once_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, reason: str
) -> None:
    if value is None:
        monkeypatch.delenv(SECRET_ENV, raising=False)
    else:
        monkeypatch.setenv(SECRET_ENV, value)
    looked_up: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["93.184.216.34"]

    notify = {"url": "https://hooks.example/x", "secret": "${" + SECRET_ENV + "}"}
    told: list[str] = []
    # 12 attempts, quick retries and close waiting up to 10 s for them: a retried notification would use them
    with notifier_for(tmp_path, notify, resolver=resolver, attempts=12) as (ledger, notifier, _):
        notifier.announce = told.append
        notifier.outcome(outcome("delivered"))
        notifier.outcome(outcome("failed"))
        notifier.close()
        rows = ledger.notifications()

    # a configuration error: one attempt each, failed with the file, the field and what to do
    assert [(r["status"], r["attempts"], r["response_code"]) for r in rows] == [("failed", 1, None)] * 2
    for row in rows:
        assert f"{tmp_path / 'rules' / 'acme.yaml'}: notify.secret: " in row["last_error"]
        assert reason in row["last_error"]
    assert looked_up == []  # nothing was sent
    assert not [m for m in told if "left pending" in m]


def test_a_client_whose_notify_block_is_gone_fails_its_pending_notifications(tmp_path: Path) -> None:
    notify = {"url": "https://hooks.example/x", "secret": "${" + SECRET_ENV + "}"}
    with notifier_for(tmp_path, notify, resolver=lambda host, port: ["10.0.0.1"]) as (ledger, notifier, ruleset):
        ruleset.clients["acme"] = ruleset.clients["acme"].model_copy(update={"notify": None})
        ledger.add_notification(webhook_id="msg_1", delivery_id=None, client_id="acme", event="vehicle.delivered",
                                url="https://hooks.example/x", payload="{}", correlation_id="c1")  # fmt: skip
        notifier.wake()
        notifier.close()
        [row] = ledger.notifications()

    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "the rules of client acme" in row["last_error"] and "have no notify block any more" in row["last_error"]


def test_notifications_of_a_client_whose_rule_file_is_broken_wait_for_the_fix(tmp_path: Path) -> None:
    notify = {"url": "https://hooks.example/x", "secret": "${" + SECRET_ENV + "}"}
    with notifier_for(tmp_path, notify, resolver=lambda host, port: ["10.0.0.1"]) as (ledger, notifier, ruleset):
        ruleset.errors["acme"] = ruleset.errors.get("acme", [])
        del ruleset.clients["acme"]
        ledger.add_notification(webhook_id="msg_1", delivery_id=None, client_id="acme", event="vehicle.delivered",
                                url="https://hooks.example/x", payload="{}", correlation_id="c1")  # fmt: skip
        notifier.wake()
        notifier.close(wait=60)  # returns at once: nothing it could send is due
        [row] = ledger.notifications()

    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 0, None)


def test_close_without_work_stops_every_thread(tmp_path: Path) -> None:
    with notifier_for(tmp_path, None) as (_, notifier, _):
        notifier.wake()
        assert any(t.name.startswith("ftpexport-webhook") for t in threading.enumerate())

    assert not any(t.name.startswith("ftpexport-webhook") for t in threading.enumerate())


def test_close_says_nothing_when_nothing_is_pending_and_tells_what_it_leaves_pending(tmp_path: Path) -> None:
    notify = {"url": "https://hooks.example/x", "secret": "${" + SECRET_ENV + "}"}
    told: list[str] = []
    with notifier_for(tmp_path, notify, resolver=lambda host, port: ["10.0.0.1"]) as (_, notifier, _):
        notifier.announce = told.append
        notifier.close(wait=60)
    assert told == []

    with notifier_for(tmp_path, notify, resolver=lambda host, port: ["10.0.0.1"]) as (ledger, notifier, ruleset):
        notifier.announce = told.append
        ruleset.errors["acme"] = ruleset.errors.get("acme", [])  # a broken rule file holds acme's notifications
        del ruleset.clients["acme"]
        ledger.add_notification(webhook_id="msg_1", delivery_id=None, client_id="acme", event="vehicle.delivered",
                                url="https://hooks.example/x", payload="{}", correlation_id="c1")  # fmt: skip
        notifier.close(wait=60)
    assert told == ["1 webhook notification(s) left pending; the next run or watch sends them"]


def test_what_a_closing_notifier_waits_for_said_per_client_and_endpoint() -> None:
    def row(client: str, url: str) -> dict[str, Any]:
        return {"client_id": client, "url": url}

    acme = row("acme-motors", "https://hooks.acme.example/ftpexport?token=t0ken")
    bravo = row("bravo-cars", "https://hooks.bravo.example:8443/in")

    assert waiting_message([], 10) is None
    assert (
        waiting_message([acme], 10)
        == "waiting up to 10 s for 1 webhook notification to acme-motors (hooks.acme.example)"
    )
    assert waiting_message([acme, acme, bravo], 2.5) == (
        "waiting up to 2.5 s for 3 webhook notifications: 2 to acme-motors (hooks.acme.example), "
        "1 to bravo-cars (hooks.bravo.example:8443)"
    )
    assert endpoint(acme["url"]) == "https://hooks.acme.example/ftpexport"  # a query may hold a token


def test_notification_totals_count_the_unsent_per_client_and_endpoint_with_the_newest_error(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "ledger.sqlite3") as ledger:

        def add(client: str, url: str, *results: tuple[bool, str | None]) -> None:
            number = len(ledger.notifications())
            nid = ledger.add_notification(
                webhook_id=f"msg_{number}", delivery_id=None, client_id=client, event="vehicle.delivered", url=url,
                payload="{}", correlation_id=None,
            )  # fmt: skip
            for ok, next_at in results:
                ledger.notification_attempt(nid, ok=ok, code=200 if ok else None,
                                            error=None if ok else f"error {number}", next_at=next_at)  # fmt: skip

        later = "2999-01-01T00:00:00.000+00:00"
        add("acme", "https://a.example/x", (True, None))  # sent: not counted
        add("acme", "https://a.example/x", (False, later))  # pending after a failed attempt
        add("acme", "https://a.example/x")  # pending, never tried
        add("acme", "https://a.example/x", (False, None))  # failed: error 3, the newest
        add("acme", "https://b.example/y", (False, None))  # another endpoint of the same client
        add("bravo", "https://c.example/z", (True, None))  # all sent: no row
        totals = ledger.notification_totals()
        only_acme_b = [t for t in ledger.notification_totals(client_id="acme") if t["url"] == "https://b.example/y"]
        oldest = ledger.notifications()[1]["created_at"]

    assert [(t["client_id"], t["url"], t["pending"], t["failed"], t["last_error"]) for t in totals] == [
        ("acme", "https://a.example/x", 2, 1, "error 3"),
        ("acme", "https://b.example/y", 0, 1, "error 4"),
    ]
    assert totals[0]["oldest_pending"] == oldest and totals[1]["oldest_pending"] is None
    assert totals[0]["last_error_at"] is not None
    assert only_acme_b == [totals[1]]

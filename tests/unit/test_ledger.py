"""The ledger through its interface: delivery states, attempts, supersession, the crash journal, the seen
cache, refusals, the outbox and the rows of the reports."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import aware, open_delivery

from ftpexport.ledger import (
    AttemptTrail,
    AttemptTranscript,
    LearnedCapabilities,
    Ledger,
    Notification,
    NotificationTotals,
    RefusedRecord,
    RouteTotals,
    SeenRecord,
    open_ledger,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with open_ledger(tmp_path / "state" / "ledger.sqlite") as opened:
        yield opened


def test_open_delivery_creates_a_pending_row(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)

    assert delivery.status == "pending"
    assert (delivery.record_id, delivery.content_hash, delivery.client_id, delivery.destination) == (
        "veh-1",
        "h1",
        "acme",
        "acme/dms",
    )
    assert delivery.record_path == "/inbox/veh-1"
    assert (delivery.attempts, delivery.last_error, delivery.remote_paths, delivery.bytes) == (0, None, (), 0)
    assert delivery.delivered_at is None
    assert abs(aware(delivery.created_at) - datetime.now().astimezone()) < timedelta(minutes=1)


def test_open_delivery_twice_returns_the_same_row(ledger: Ledger) -> None:
    first = open_delivery(ledger)
    again = ledger.open_delivery(
        record_id="veh-1", content_hash="h1", client_id="acme", destination="acme/dms", record_path="/moved/veh-1"
    )

    assert again.id == first.id
    assert again.record_path == "/moved/veh-1"
    assert len(ledger.deliveries()) == 1


def test_a_successful_attempt_delivers_with_paths_bytes_and_time(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)

    attempt = ledger.start_attempt(delivery.id, "corr-1")
    ledger.succeed(delivery.id, attempt, ["photos/V.zip", "photos/V.done"], 12345)

    done = ledger.find("veh-1", "h1", "acme/dms")
    assert done is not None
    assert done.status == "delivered"
    assert done.remote_paths == ("photos/V.zip", "photos/V.done")
    assert done.bytes == 12345
    assert done.attempts == 1
    assert done.correlation_id == "corr-1"
    assert done.last_error is None
    assert aware(done.delivered_at) >= aware(done.created_at)
    assert done.as_dict()["remote_paths"] == ["photos/V.zip", "photos/V.done"]


def test_a_failed_attempt_that_is_not_final_stays_pending(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)

    attempt = ledger.start_attempt(delivery.id, "corr-1")
    ledger.fail(delivery.id, attempt, "destination acme/dms: connection refused", final=False, sent=10)

    row = ledger.find("veh-1", "h1", "acme/dms")
    assert row is not None
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "destination acme/dms: connection refused")
    assert row.delivered_at is None


def test_a_final_failure_parks_the_delivery_as_failed_with_its_last_error(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    for n, final in enumerate((False, False, True), start=1):
        attempt = ledger.start_attempt(delivery.id, f"corr-{n}")
        ledger.fail(delivery.id, attempt, f"error {n}", final=final)

    row = ledger.find("veh-1", "h1", "acme/dms")
    assert row is not None
    assert (row.status, row.attempts, row.last_error, row.correlation_id) == ("failed", 3, "error 3", "corr-3")
    assert [d.id for d in ledger.deliveries(status="failed")] == [delivery.id]
    assert ledger.deliveries(status="pending") == []


def test_a_retry_after_failure_can_deliver(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    ledger.fail(delivery.id, ledger.start_attempt(delivery.id, "c1"), "boom", final=True)

    ledger.succeed(delivery.id, ledger.start_attempt(delivery.id, "c2"), ["V.zip"], 3)

    row = ledger.find("veh-1", "h1", "acme/dms")
    assert row is not None
    assert (row.status, row.attempts, row.last_error) == ("delivered", 2, None)


def test_attempts_history_is_kept_oldest_first(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    first = ledger.start_attempt(delivery.id, "c1")
    ledger.fail(delivery.id, first, "421 too many connections", final=False, sent=100)
    second = ledger.start_attempt(delivery.id, "c2")
    ledger.succeed(delivery.id, second, ["V.zip"], 2048)

    history = ledger.attempts(delivery.id)

    assert [(a["id"], a["correlation_id"], a["result"], a["error"], a["bytes"]) for a in history] == [
        (first, "c1", "failed", "421 too many connections", 100),
        (second, "c2", "delivered", None, 2048),
    ]
    for attempt in history:
        assert aware(attempt["finished_at"]) >= aware(attempt["started_at"])
    assert ledger.attempts(delivery.id + 99) == []


def test_a_new_content_hash_supersedes_the_old_undelivered_row(ledger: Ledger) -> None:
    old = open_delivery(ledger, content_hash="h1")
    ledger.fail(old.id, ledger.start_attempt(old.id, "c1"), "boom", final=True)
    other_destination = open_delivery(ledger, content_hash="h1", destination="acme/tls")

    new = open_delivery(ledger, content_hash="h2")

    assert new.status == "pending"
    assert new.id != old.id
    superseded = ledger.find("veh-1", "h1", "acme/dms")
    assert superseded is not None
    assert superseded.status == "superseded"
    assert superseded.last_error == "boom"  # history kept
    # the other destination's row is its own business
    untouched = ledger.find("veh-1", "h1", "acme/tls")
    assert untouched is not None
    assert untouched.status == "pending"
    assert untouched.id == other_destination.id


def test_a_new_content_hash_leaves_a_delivered_row_delivered(ledger: Ledger) -> None:
    old = open_delivery(ledger, content_hash="h1")
    ledger.succeed(old.id, ledger.start_attempt(old.id, "c1"), ["V.zip"], 1)

    open_delivery(ledger, content_hash="h2")

    row = ledger.find("veh-1", "h1", "acme/dms")
    assert row is not None
    assert row.status == "delivered"
    assert {d.content_hash: d.status for d in ledger.deliveries()} == {"h1": "delivered", "h2": "pending"}


def test_find_knows_only_the_exact_version_and_destination(ledger: Ledger) -> None:
    open_delivery(ledger)

    assert ledger.find("veh-1", "h1", "acme/dms") is not None
    assert ledger.find("veh-1", "h2", "acme/dms") is None
    assert ledger.find("veh-1", "h1", "acme/tls") is None
    assert ledger.find("veh-2", "h1", "acme/dms") is None


def test_counts_per_client_and_status(ledger: Ledger) -> None:
    delivered = open_delivery(ledger, "veh-1", destination="acme/dms")
    ledger.succeed(delivered.id, ledger.start_attempt(delivered.id, "c"), ["x"], 1)
    open_delivery(ledger, "veh-1", destination="acme/tls")
    open_delivery(ledger, "veh-2", destination="acme/dms")
    failed = open_delivery(ledger, "veh-3", destination="bravo/dms")
    ledger.fail(failed.id, ledger.start_attempt(failed.id, "c"), "no", final=True)

    assert ledger.counts() == {"acme": {"delivered": 1, "pending": 2}, "bravo": {"failed": 1}}


def test_deliveries_filter_and_limit(ledger: Ledger) -> None:
    for n in range(5):
        open_delivery(ledger, f"veh-{n}", destination="acme/dms" if n % 2 else "bravo/dms")

    assert len(ledger.deliveries()) == 5
    assert sorted(d.record_id for d in ledger.deliveries(client_id="acme")) == ["veh-1", "veh-3"]
    assert len(ledger.deliveries(limit=2)) == 2
    assert ledger.deliveries(status="delivered") == []


# --- the crash journal, interrupted attempts, requeue and resumption (schema 2)


def test_the_file_journal_goes_from_renaming_to_published_per_file(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    other = open_delivery(ledger, destination="acme/other")
    ledger.mark_files(delivery.id, {"out/A.zip": "renaming"})
    ledger.mark_files(delivery.id, {"out/A.json": "renaming"})
    ledger.mark_files(delivery.id, {"out/A.zip": "published"})

    assert ledger.file_states(delivery.id) == {"out/A.zip": "published", "out/A.json": "renaming"}
    assert ledger.file_states(other.id) == {}


def test_mark_files_writes_several_files_of_a_delivery_at_once(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    ledger.mark_files(delivery.id, {"out/A_01.jpg": "renaming"})
    ledger.mark_files(delivery.id, {"out/A_01.jpg": "published", "out/A_02.jpg": "renaming"})
    ledger.mark_files(delivery.id, {})  # nothing to write

    assert ledger.file_states(delivery.id) == {"out/A_01.jpg": "published", "out/A_02.jpg": "renaming"}


def test_close_interrupted_marks_only_unfinished_attempts(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    finished = ledger.start_attempt(delivery.id, "c1")
    ledger.fail(delivery.id, finished, "timed out", final=False)
    ledger.start_attempt(delivery.id, "c2")  # the process dies here

    assert ledger.close_interrupted() == 1
    attempts = ledger.attempts(delivery.id)
    assert [a["result"] for a in attempts] == ["failed", "interrupted"]
    assert attempts[1]["finished_at"] is not None
    assert ledger.close_interrupted() == 0
    assert ledger.get(delivery.id).status == "pending"


def test_requeue_puts_failed_deliveries_back_with_a_fresh_budget(ledger: Ledger) -> None:
    failed = [open_delivery(ledger, record_id=f"veh-{i}", destination=d) for i, d in
              enumerate(["acme/dms", "acme/ftp", "bravo/dms"])]  # fmt: skip
    for delivery in failed:
        attempt = ledger.start_attempt(delivery.id, "c")
        ledger.fail(delivery.id, attempt, "login refused", final=True)
    pending = open_delivery(ledger, record_id="veh-9")

    assert ledger.requeue(client_id="nobody") == []
    requeued = ledger.requeue(client_id="acme", destination="acme/ftp")
    assert [d.id for d in requeued] == [failed[1].id]
    assert requeued[0].last_error == "login refused"  # what it was, for the operator
    again = ledger.get(failed[1].id)
    assert (again.status, again.attempts) == ("pending", 0)
    assert len(ledger.attempts(failed[1].id)) == 1  # the history stays
    assert [d.id for d in ledger.requeue()] == [failed[0].id, failed[2].id]
    assert ledger.get(pending.id).status == "pending"


def test_pending_record_paths_are_unique_oldest_first(ledger: Ledger) -> None:
    open_delivery(ledger, record_id="veh-2")
    open_delivery(ledger, record_id="veh-1")
    open_delivery(ledger, record_id="veh-2", destination="acme/other")
    done = open_delivery(ledger, record_id="veh-3")
    ledger.succeed(done.id, ledger.start_attempt(done.id, "c"), ["x"], 1)

    assert ledger.pending_record_paths() == ["/inbox/veh-2", "/inbox/veh-1"]


def test_a_record_folder_that_is_gone_parks_its_pending_deliveries(ledger: Ledger) -> None:
    gone = open_delivery(ledger, record_id="veh-1")
    kept = open_delivery(ledger, record_id="veh-2")

    assert ledger.give_up_on_missing("/inbox/veh-1", "the record folder is gone: /inbox/veh-1") == 1
    assert (ledger.get(gone.id).status, ledger.get(gone.id).last_error) == (
        "failed", "the record folder is gone: /inbox/veh-1"
    )  # fmt: skip
    assert ledger.get(kept.id).status == "pending"


def test_defer_keeps_a_delivery_pending_with_the_reason(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    ledger.defer(delivery.id, "not tried: ftpexport was stopping")
    again = ledger.get(delivery.id)
    assert (again.status, again.last_error, again.attempts) == ("pending", "not tried: ftpexport was stopping", 0)


def test_a_version_that_comes_back_after_being_superseded_is_pending_again(ledger: Ledger) -> None:
    first = open_delivery(ledger, content_hash="h1")
    second = open_delivery(ledger, content_hash="h2")
    assert ledger.get(first.id).status == "superseded"

    again = open_delivery(ledger, content_hash="h1")  # the vehicle was changed back
    assert (again.id, again.status) == (first.id, "pending")
    assert ledger.get(second.id).status == "superseded"


@pytest.mark.parametrize("final", [False, True], ids=["failed, to retry", "failed for good"])
def test_a_version_superseded_while_its_attempt_runs_stays_superseded(ledger: Ledger, final: bool) -> None:
    first = open_delivery(ledger, content_hash="h1")
    queued = open_delivery(ledger, content_hash="h2")
    attempt = ledger.start_attempt(first.id, "c1")  # a job of h1 that was queued or running already
    ledger.fail(first.id, attempt, "image '1.jpg' changed after it was read", final=final)
    late = ledger.start_attempt(first.id, "c2")

    assert ledger.get(first.id).status == "superseded"
    assert [d.id for d in ledger.deliveries(status="pending")] == [queued.id]  # only the newer version is to be sent
    ledger.succeed(first.id, late, ["acme/dms/x.zip"], 10)  # what did reach the server is recorded
    assert ledger.get(first.id).status == "delivered"


def test_a_record_marked_seen_is_remembered_with_its_signature_rules_and_deliveries(ledger: Ledger) -> None:
    first, second = open_delivery(ledger, destination="acme/dms"), open_delivery(ledger, destination="acme/b")
    assert ledger.seen("/inbox/veh-1") is None
    ledger.mark_seen("/inbox/veh-1", "sig-1", "rules-1", [second.id, first.id])
    assert ledger.seen("/inbox/veh-1") == SeenRecord("sig-1", "rules-1", (first.id, second.id))
    ledger.mark_seen("/inbox/veh-1", "sig-2", "rules-1", [first.id])
    assert ledger.seen("/inbox/veh-1") == SeenRecord("sig-2", "rules-1", (first.id,))
    assert [d.id for d in ledger.by_ids([second.id, first.id, 999])] == [first.id, second.id]


# --- file modes and a full disk


# --- refused records (schema 5)


def test_a_refused_record_is_kept_counted_and_cleared(ledger: Ledger) -> None:
    ledger.refuse("/inbox/veh-1", kind="record", reason="vehicle.json is not valid JSON")
    ledger.refuse("/inbox/veh-2", kind="rules", reason="no rule file for client 'zulu'", record_id="veh-2",
                  client_id="zulu")  # fmt: skip
    [first] = [row for row in ledger.refused() if row["record_path"] == "/inbox/veh-1"]
    assert first["times"] == 1 and first["client_id"] is None and first["rule_file"] is None
    ledger.refuse("/inbox/veh-1", kind="naming", reason="template rendered 'a/b'", record_id="veh-1",
                  client_id="acme", rule_file="rules/acme.yaml")  # fmt: skip

    rows = {row["record_path"]: row for row in ledger.refused()}
    again = rows["/inbox/veh-1"]
    assert again == {**again, "record_id": "veh-1", "client_id": "acme", "kind": "naming", "times": 2,
                     "reason": "template rendered 'a/b'", "rule_file": "rules/acme.yaml",
                     "first_seen": first["first_seen"]}  # fmt: skip
    assert aware(again["last_seen"]) >= aware(again["first_seen"])
    assert [row["record_path"] for row in ledger.refused()] == ["/inbox/veh-1", "/inbox/veh-2"]  # last refused first
    assert [row["record_path"] for row in ledger.refused(client_id="zulu")] == ["/inbox/veh-2"]
    assert again in ledger.refused(since=again["last_seen"])
    assert ledger.refused(since="9999-01-01") == []
    assert ledger.refused_counts() == {"acme": 1, "zulu": 1}

    assert ledger.clear_refused("/inbox/veh-1") is True
    assert ledger.clear_refused("/inbox/veh-1") is False
    assert [row["record_path"] for row in ledger.refused()] == ["/inbox/veh-2"]


def test_the_rows_returned_as_dicts_have_exactly_the_keys_their_types_declare(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    ledger.succeed(delivery.id, ledger.start_attempt(delivery.id, "c-1"), ["/in/veh-1.zip"], 10)
    ledger.refuse("/inbox/bad", kind="record", reason="vehicle.json is not JSON")
    ledger.add_notification(
        webhook_id="w-1", delivery_id=delivery.id, client_id="acme", event="delivery.succeeded",
        url="https://hooks.example/x", payload="{}", correlation_id="c-1",
    )  # fmt: skip
    rows: dict[str, tuple[list[Any], Any]] = {
        "refused": (ledger.refused(), RefusedRecord),
        "notifications": (ledger.notifications(), Notification),
        "due_notifications": (ledger.due_notifications(), Notification),
        "history": (ledger.history(), AttemptTrail),
        "routes": (ledger.routes(), RouteTotals),
        "routes since": (ledger.routes(since="2000-01-01"), RouteTotals),
        "notification_totals": (ledger.notification_totals(), NotificationTotals),
    }

    for method, (found, declared) in rows.items():
        assert len(found) == 1, method
        assert set(found[0]) == set(declared.__required_keys__), method


def test_a_withdrawn_attempt_leaves_no_row_and_no_try(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    first = ledger.start_attempt(delivery.id, "c1")
    ledger.fail(delivery.id, first, "530 refused", final=False)
    withdrawn = ledger.start_attempt(delivery.id, "c2")

    ledger.withdraw_attempt(delivery.id, withdrawn)

    assert ledger.get(delivery.id).attempts == 1
    assert [(a["correlation_id"], a["result"]) for a in ledger.history()] == [("c1", "failed")]
    assert ledger.get(delivery.id).status == "pending"


def test_capabilities_are_kept_per_destination_and_changed_at_moves_only_on_a_change(ledger: Ledger) -> None:
    assert ledger.capabilities() == {}

    assert ledger.save_capabilities("acme/dms", {"rename": True, "features": ["SIZE", "UTF8"]}) is True
    first = ledger.capabilities("acme/dms")["acme/dms"]
    assert ledger.save_capabilities("acme/dms", {"features": ["SIZE", "UTF8"], "rename": True}) is False
    same = ledger.capabilities("acme/dms")["acme/dms"]
    assert ledger.save_capabilities("acme/dms", {"rename": False}) is True
    changed = ledger.capabilities()["acme/dms"]
    ledger.save_capabilities("other/sftp", {"extensions": ["posix-rename@openssh.com"]})

    assert first["capabilities"] == {"rename": True, "features": ["SIZE", "UTF8"]}
    assert same["changed_at"] == first["changed_at"] <= same["probed_at"]
    assert changed["capabilities"] == {"rename": False}
    assert changed["changed_at"] == changed["probed_at"] >= first["changed_at"]
    assert list(ledger.capabilities()) == ["acme/dms", "other/sftp"]
    assert set(changed) == set(LearnedCapabilities.__required_keys__)


def test_transcripts_keep_every_failure_and_the_last_successes_per_destination(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    failed = ledger.start_attempt(delivery.id, "corr-1")
    ledger.fail(delivery.id, failed, "553 refused", final=False)
    ledger.save_transcript(failed, delivery.id, "acme/dms", [{"send": "STOR x"}, {"reply": "553 no"}],
                           ok=False, keep_ok=2)  # fmt: skip
    oks = []
    for number in range(4):
        other = open_delivery(ledger, record_id=f"r-{number}")
        attempt = ledger.start_attempt(other.id, f"ok-{number}")
        ledger.succeed(other.id, attempt, ["x.zip"], 1)
        ledger.save_transcript(attempt, other.id, "acme/dms", [{"send": "RNTO x"}], ok=True, keep_ok=2)
        oks.append(attempt)

    kept = ledger.attempts_with_transcripts([failed, *oks])
    shown = ledger.transcripts("corr-1")

    assert kept == {failed, oks[2], oks[3]}
    assert [(t["attempt_id"], t["ok"], t["result"]) for t in shown] == [(failed, False, "failed")]
    assert shown[0]["entries"] == [{"send": "STOR x"}, {"reply": "553 no"}]
    assert shown[0]["size"] > 0
    assert set(shown[0]) == set(AttemptTranscript.__required_keys__)
    assert ledger.transcripts("no-such-id") == []


def test_transcripts_are_found_by_any_attempt_of_the_delivery_and_purged_by_age(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    attempts = []
    for correlation in ("first", "second"):
        attempt = ledger.start_attempt(delivery.id, correlation)
        ledger.fail(delivery.id, attempt, "421 too many", final=False)
        ledger.save_transcript(attempt, delivery.id, "acme/dms", [{"reply": "421"}], ok=False, keep_ok=0)
        attempts.append(attempt)

    assert [t["attempt_id"] for t in ledger.transcripts("second")] == attempts
    assert ledger.purge_transcripts("2000-01-01T00:00:00+00:00") == 0
    assert ledger.purge_transcripts((datetime.now().astimezone() + timedelta(seconds=1)).isoformat()) == 2
    assert ledger.transcripts("first") == []


def test_history_marks_the_attempts_with_a_transcript_and_correlation_ids_are_known(ledger: Ledger) -> None:
    delivery = open_delivery(ledger)
    kept = ledger.start_attempt(delivery.id, "with-one")
    ledger.fail(delivery.id, kept, "553 refused", final=False)
    ledger.save_transcript(kept, delivery.id, "acme/dms", [{"send": "STOR x"}], ok=False, keep_ok=5)
    ledger.succeed(delivery.id, ledger.start_attempt(delivery.id, "without"), ["x.zip"], 1)

    marks = [(a["correlation_id"], a["transcript"]) for a in ledger.history()]

    assert marks == [("with-one", True), ("without", False)]
    assert ledger.correlation_known("with-one") and ledger.correlation_known("without")
    assert not ledger.correlation_known("never-seen")

"""The exporter on a shared ledger, offline: every attempt claimed first and released after, the
refusals (wait, settled, held by another host), the persisted backoff, the breaker shared by the
hosts and its probe, a claim lost before the rename, and connection slots held by the connections.

The ledger is ``FencedLedger`` (SQLite answering as a shared ledger, its coordination a host of the
in-memory ``FakeCluster``); the server is ``transport.memory`` as in test_pipeline.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_coordination import FakeCluster, FencedLedger, _Breaker
from fifo_guard import HANG_GUARD
from records import MakeRecord
from test_pipeline import DESTINATION, PASSWORD_ENV, Outcomes, World, finals, offline, results

from ftpexport import claims, slots
from ftpexport.connections import Connections
from ftpexport.events import Summary
from ftpexport.ledger import Claim, open_ledger
from ftpexport.record import load_record
from ftpexport.rules import load_rules, routes_for

__all__ = ["offline"]  # the fixture of test_pipeline: no test here reaches the network

ME, OTHER = "host-a:1:aaaaaa", "host-b:2:bbbbbb"
FOREVER = float("inf")


class Shared(World):
    """A World whose ledger is shared through ``cluster`` (this process is host ``ME``)."""

    cluster: FakeCluster

    @contextlib.contextmanager
    def ledger(self) -> Iterator[FencedLedger]:
        self.ledger_path.parent.mkdir(parents=True, exist_ok=True)
        with FencedLedger(self.ledger_path, self.cluster.host(ME)) as ledger:
            yield ledger

    def run(self, folders: list[Path], prepare: Any = None, **options: Any) -> Summary:
        """One batch run, like ``ftpexport run`` on a shared ledger."""
        with self.ledger() as ledger:
            if prepare is not None:
                prepare(ledger)
            with self.exporter(ledger, **options) as exporter:
                return exporter.export(folders)

    def mine(self, method: str) -> list[tuple[Any, ...]]:
        return [call[2:] for call in self.cluster.calls if call[0] == ME and call[1] == method]


@pytest.fixture
def world(tmp_path: Path, make_record: MakeRecord, monkeypatch: pytest.MonkeyPatch) -> Shared:
    monkeypatch.setenv(PASSWORD_ENV, "not-a-real-password")
    monkeypatch.setattr(claims, "RECLAIM_AFTER", 0.001)
    monkeypatch.setattr(claims, "SLOT_WAIT", 0.001)
    world = Shared(tmp_path, make_record)
    world.cluster = FakeCluster()
    world.rules()
    return world


# --- claims


def test_each_attempt_is_claimed_first_and_released_after(world: Shared) -> None:
    summary = world.run([world.record()])

    assert results(summary) == ["delivered"]
    assert world.mine("claim") == [(1, DESTINATION)]
    assert world.mine("release") == [(1, None)]
    assert world.deliveries() == [("delivered", 1, ["delivered"])]
    assert world.cluster.holder(1) is None


def test_a_delivery_another_host_holds_is_left_to_it(world: Shared) -> None:
    world.cluster.claims[1] = (OTHER, FOREVER)  # the other host found the record first

    summary = world.run([world.record()])

    [outcome] = summary.outcomes
    assert outcome.result == "deferred" and outcome.error == f"deferred: being sent by {OTHER}"
    assert world.server.login_attempts == 0 and world.server.listing() == {}
    assert world.deliveries() == [("pending", 0, [])]  # no attempt of ours, no try counted
    assert world.mine("release") == [] and world.cluster.holder(1) == OTHER


def test_a_delivery_settled_meanwhile_is_dropped(world: Shared) -> None:
    world.cluster.settled.add(1)  # another host delivered it since this one read the record

    summary = world.run([world.record()])

    assert results(summary) != ["delivered"]
    assert world.server.login_attempts == 0 and world.deliveries() == [("pending", 0, [])]
    assert world.mine("claim") == [(1, DESTINATION)]  # asked once, not again


def test_a_claim_refused_with_a_wait_is_tried_again_without_counting_a_try(world: Shared) -> None:
    world.cluster.refuse_claims[1] = [Claim(False, wait=0.001, reason="retry backoff")] * 2

    summary = world.run([world.record()], breaker_threshold=1)

    assert [(o.result, o.attempts) for o in summary.outcomes] == [("delivered", 1)]
    assert len(world.mine("claim")) == 3
    assert world.deliveries() == [("delivered", 1, ["delivered"])]
    assert world.mine("destination_failed") == []  # a wait is not a failure of the destination


def test_a_destination_paused_by_another_host_is_paused_here(world: Shared) -> None:
    cluster = world.cluster
    cluster.breakers[DESTINATION] = _Breaker(trips=1, paused_until=cluster.now + 300, last_error="530 refused")

    summary = world.run([world.record()])

    [outcome] = summary.outcomes
    assert outcome.result == "deferred" and "the destination is paused" in (outcome.error or "")
    assert "530 refused" in (outcome.error or "")
    assert world.server.login_attempts == 0 and world.deliveries() == [("pending", 0, [])]


def test_a_retry_releases_the_claim_with_its_backoff(world: Shared) -> None:
    world.server.refuse("put", "*.zip*", times=1)

    summary = world.run([world.record()], retries=3, backoff=0.002)

    assert [(o.result, o.attempts) for o in summary.outcomes] == [("delivered", 2)]
    [(first, retry_in), (second, none)] = world.mine("release")
    assert (first, second, none) == (1, 1, None)
    assert 0.001 <= retry_in <= 0.002  # the backoff of the first retry, persisted for every host
    assert 1 in world.cluster.not_before  # no host claims it before the backoff is over


# --- the shared breaker and its probe


def test_failures_count_in_the_breaker_every_host_shares(world: Shared) -> None:
    world.server.refuse("login", times=None)
    # the other host saw one failure already: with a threshold of 2, this host's first one pauses
    world.cluster.breakers[DESTINATION] = _Breaker(failures=1, last_error="421 too many")

    summary = world.run([world.record(1), world.record(2)], retries=10, breaker_threshold=2, pause=300.0, jobs=1)

    assert world.server.login_attempts == 1
    assert results(summary) == ["deferred", "deferred"]
    assert all("the destination is paused" in (o.error or "") for o in summary.outcomes)
    [(destination, _, threshold, pause, _, long)] = world.mine("destination_failed")
    assert (destination, threshold, pause, long) == (DESTINATION, 2, 300.0, False)
    assert world.cluster.breakers[DESTINATION].paused_until > world.cluster.now + 250


def test_a_success_tells_the_shared_breaker(world: Shared) -> None:
    world.cluster.breakers[DESTINATION] = _Breaker(failures=2, last_error="421 too many")

    world.run([world.record()])

    assert world.mine("destination_ok") == [(DESTINATION,)]
    assert DESTINATION not in world.cluster.breakers


def test_the_probe_closes_the_shared_breaker_when_the_destination_answers(world: Shared) -> None:
    cluster = world.cluster
    cluster.breakers[DESTINATION] = _Breaker(trips=1, paused_until=cluster.now - 1, last_error="421")
    world.server.refuse("put", "*.zip*", permanent=True, times=None)  # the record's failure, not the server's

    summary = world.run([world.record()])

    assert results(summary) == ["failed"]
    assert world.mine("destination_ok") == [(DESTINATION,)]  # it answered: the pause is over for all
    assert DESTINATION not in cluster.breakers


def test_one_probe_at_a_time_the_other_hosts_wait_for_its_answer(world: Shared) -> None:
    cluster = world.cluster
    cluster.breakers[DESTINATION] = _Breaker(trips=1, paused_until=cluster.now - 1, probe=(OTHER, 99))
    answered: list[int] = []

    def probe_answers(ledger: FencedLedger) -> None:
        # the other host's probe answers after this host was refused twice
        original = ledger.coordination.claim

        def claim(delivery_id: int, destination: str) -> Claim:
            if len(world.mine("claim")) == 2:
                cluster.breakers.pop(DESTINATION)
                answered.append(delivery_id)
            return original(delivery_id, destination)

        ledger.coordination.claim = claim  # type: ignore[method-assign]

    summary = world.run([world.record()], prepare=probe_answers)

    assert results(summary) == ["delivered"] and answered == [1]
    assert world.deliveries() == [("delivered", 1, ["delivered"])]  # the waits counted no try
    assert world.server.login_attempts == 1


# --- a claim lost before the rename


def test_a_claim_lost_stops_the_attempt_before_its_rename_and_counts_nothing(world: Shared) -> None:
    def lose(ledger: FencedLedger) -> None:
        ledger.steal_at_rename[1] = OTHER  # its lease ran out mid-upload and the other host took it

    summary = world.run([world.record()], prepare=lose)

    [outcome] = summary.outcomes
    assert outcome.result == "deferred" and "no longer holds it" in (outcome.error or "")
    assert finals(world.server) == {}  # never renamed to its final name
    [(status, _, trail)] = world.deliveries()
    assert (status, trail) == ("pending", [None])  # no failure recorded: the attempt is left open
    assert world.cluster.holder(1) == OTHER  # the delivery is its new holder's
    assert world.mine("release") == [] and world.mine("destination_failed") == []
    assert world.mine("destination_ok") == []


# --- connection slots


def test_a_connection_holds_its_slot_while_open_idle_included(world: Shared) -> None:
    outcomes = Outcomes()
    with world.ledger() as ledger:
        with world.exporter(ledger, on_outcome=outcomes) as exporter:
            exporter.submit([world.record()])
            [outcome] = outcomes.wait_for(1)
            assert outcome.result == "delivered"
            # the connection waits for the next record, idle: its slot stays taken
            assert world.server.open_connections == 1
            assert world.cluster.slots_of(ME, DESTINATION) == [0]
        assert world.server.open_connections == 0
        assert world.cluster.slots_of(ME, DESTINATION) == []  # closed: the slot is free again
    assert world.mine("drop_slot") == [(DESTINATION, 0)]


def test_no_free_slot_waits_without_counting_a_try(world: Shared) -> None:
    cluster = world.cluster
    for slot in range(2):  # max_connections 2, both open at the other host
        cluster.slots[(DESTINATION, slot)] = (OTHER, FOREVER)
    refused: list[str] = []

    def other_closes_one(host: str, destination: str) -> None:
        refused.append(host)
        if len(refused) == 3:
            del cluster.slots[(DESTINATION, 1)]

    cluster.on_take_slot = other_closes_one

    summary = world.run([world.record()], breaker_threshold=1)

    assert [(o.result, o.attempts) for o in summary.outcomes] == [("delivered", 1)]
    assert refused == [ME] * 3
    assert world.server.connections == 1 and world.mine("destination_failed") == []
    # no claim while there was no slot to send it with
    assert len(world.mine("claim")) == 1


def test_a_slot_lost_before_the_connection_opens_withdraws_the_attempt_without_counting_it(
    world: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the idle connection an attempt counted on was closed (expired, dead, or closed to make room)
    # and every slot is held meanwhile: the new connection finds none; the attempt never reached the
    # server, so it is no try and no failure (before: a failed attempt counted, parked after four)
    take = slots.Slots.take
    lost: list[str] = []

    def no_slot_once(self: slots.Slots, destination: str, limit: int) -> int:
        if not lost:
            lost.append(destination)
            raise slots.NoSlotError(destination, limit)
        return take(self, destination, limit)

    monkeypatch.setattr(slots.Slots, "take", no_slot_once)

    summary = world.run([world.record()], retries=0, breaker_threshold=1)

    assert [(o.result, o.attempts) for o in summary.outcomes] == [("delivered", 1)]
    assert lost == [DESTINATION]
    assert world.deliveries() == [("delivered", 1, ["delivered"])]  # the withdrawn attempt left no row
    assert world.mine("destination_failed") == []
    assert world.cluster.holder(1) is None


def test_a_ledger_held_alone_has_no_heartbeat_and_no_slots(world: Shared, tmp_path: Path) -> None:
    with open_ledger(tmp_path / "solo.sqlite3") as ledger, world.exporter(ledger) as exporter:
        assert exporter._claims.heartbeat is None
        assert exporter._connections.slots is None


# --- self-fencing


def test_a_host_without_heartbeat_cuts_its_uploads_closes_its_connections_and_claims_nothing(world: Shared) -> None:
    world.rules(max_connections=2)
    hang = world.server.hang("put", "*", after=100)
    outcomes = Outcomes()
    with world.ledger() as ledger:
        ledger.coordination.heartbeat_fails = True  # the database cannot be reached any more
        with world.exporter(ledger, on_outcome=outcomes) as exporter:
            exporter.submit([world.record(1, image_size=5000)])
            assert hang.reached.wait(HANG_GUARD)
            assert world.cluster.slots_of(ME, DESTINATION) == [0]
            heartbeat = exporter._claims.heartbeat
            assert heartbeat is not None
            heartbeat.clock = lambda: time.monotonic() + 3600  # an hour since the last heartbeat
            assert not heartbeat.holding  # fenced: its running upload is cut now

            [cut] = outcomes.wait_for(1)
            assert cut.result == "deferred" and "heartbeat did not reach the shared ledger" in (cut.error or "")
            assert world.cluster.slots_of(ME, DESTINATION) == []  # its connection is closed, its slot free
            claims = len(world.mine("claim"))
            exporter.submit([world.record(2)])
            exporter.close(grace=0)
        assert len(world.mine("claim")) == claims  # nothing claimed while fenced

    assert finals(world.server) == {}
    assert [status for status, _, _ in world.deliveries()] == ["pending", "pending"]


def test_a_destination_that_cannot_be_opened_fails_in_its_attempt(
    world: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the connection slot is looked for before the claim: a secret missing there is still the
    # attempt's failure, recorded as such, not an error of the scheduler
    monkeypatch.delenv(PASSWORD_ENV)

    summary = world.run([world.record()], retries=0)

    [outcome] = summary.outcomes
    assert outcome.result == "failed" and PASSWORD_ENV in (outcome.error or "")
    assert world.deliveries() == [("failed", 1, ["failed"])]


def test_two_attempts_never_count_on_the_same_idle_connection(world: Shared) -> None:
    ruleset = load_rules(world.root / "rules")
    [route] = routes_for(ruleset, load_record(world.record()))
    connections = Connections(jobs=4, idle_timeout=60.0, lanes=dict, transport_factory=world.transport,
                              coordination=world.cluster.host(ME))  # fmt: skip
    pool, transport = connections.acquire(route, "test")
    pool.release(transport, reuse=True)  # one idle connection, holding slot 0
    world.cluster.slots[(DESTINATION, 1)] = (OTHER, FOREVER)  # the other host has the second one open
    reserved: list[bool] = []

    for _ in range(2):  # two attempts starting together, each on its worker thread
        worker = threading.Thread(target=lambda: reserved.append(connections.reserve(route, "test")))
        worker.start()
        worker.join()

    # the first counts on the idle connection; the second must wait for a slot (before, it counted on
    # the same idle connection, found it taken, and its attempt failed for want of a slot)
    assert reserved == [True, False]
    connections.close()
    assert world.cluster.slots_of(ME, DESTINATION) == []

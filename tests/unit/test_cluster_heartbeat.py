"""The heartbeat of a host on a shared ledger and its self-fencing (``ftpexport.cluster``), on a
clock of the test's own: no thread, no sleep."""

from __future__ import annotations

import pytest
from fake_coordination import FakeCluster, FakeCoordination

from ftpexport.cluster import Heartbeat


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def host() -> FakeCoordination:
    return FakeCluster().host("host-a:1:aaaaaa", lease=30.0)


def test_a_heartbeat_every_third_of_the_lease_fencing_at_two_thirds(host: FakeCoordination) -> None:
    heartbeat = Heartbeat(host, lambda: None, clock=Clock())
    assert (heartbeat.interval, heartbeat.limit) == (10.0, 20.0)


def test_a_host_whose_heartbeat_fails_for_two_thirds_of_the_lease_cuts_its_uploads(host: FakeCoordination) -> None:
    clock, cut = Clock(), []
    heartbeat = Heartbeat(host, lambda: cut.append(clock.now), clock=clock)
    heartbeat.beat()
    host.heartbeat_fails = True

    clock.now += 10
    heartbeat.beat()
    assert heartbeat.holding and cut == []  # one failed heartbeat: the leases are still alive
    clock.now += 9.9
    heartbeat.beat()
    assert heartbeat.holding and cut == []

    clock.now += 0.1  # 20 s since the last heartbeat that succeeded
    heartbeat.beat()
    assert not heartbeat.holding and cut == [120.0]
    clock.now += 10
    heartbeat.beat()
    assert not heartbeat.holding and cut == [120.0]  # cut once

    host.heartbeat_fails = False
    heartbeat.beat()
    assert heartbeat.holding  # it claims again


def test_a_heartbeat_that_hangs_still_fences(host: FakeCoordination) -> None:
    # the beating thread is stuck in the database call: the watching one looks at the time alone
    clock, cut = Clock(), []
    heartbeat = Heartbeat(host, lambda: cut.append(clock.now), clock=clock)
    clock.now += 25
    assert heartbeat.check() is False and cut == [125.0]


def test_a_heartbeat_sent_before_the_fence_does_not_count_from_its_answer(host: FakeCoordination) -> None:
    # the lease was renewed when the heartbeat was sent, not when its answer came
    clock = Clock()

    def slow() -> None:
        clock.now += 15

    heartbeat = Heartbeat(host, lambda: None, clock=clock)
    host.heartbeat = slow  # type: ignore[method-assign]
    heartbeat.beat()  # sent at 100, answered at 115
    clock.now += 5.5
    assert not heartbeat.holding  # 20.5 s since it was sent

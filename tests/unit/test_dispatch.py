"""The dispatcher: lanes, limits, fairness, backoff without held workers, the breaker, stopping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from ftpexport.backoff import backoff_delay
from ftpexport.dispatch import Dispatcher, Job, JobResult, Policy

FAST = Policy(backoff=0.01, max_backoff=0.05, breaker_threshold=3, breaker_pause=60.0, max_pause=600.0)


class Recorder:
    """Runs jobs with a per-lane behaviour and records what happened."""

    def __init__(self, behaviour: Callable[[Job], JobResult]) -> None:
        self.behaviour = behaviour
        self.lock = threading.Lock()
        self.runs: list[tuple[str, object, int]] = []
        self.abandoned: list[tuple[object, str]] = []
        self.active: dict[str, int] = {}
        self.most_active: dict[str, int] = {}

    def handler(self, job: Job) -> JobResult:
        with self.lock:
            self.runs.append((job.lane, job.ident, job.tries))
            self.active[job.lane] = self.active.get(job.lane, 0) + 1
            self.most_active[job.lane] = max(self.most_active.get(job.lane, 0), self.active[job.lane])
        try:
            return self.behaviour(job)
        finally:
            with self.lock:
                self.active[job.lane] -= 1

    def abandon(self, job: Job, reason: str) -> None:
        with self.lock:
            self.abandoned.append((job.ident, reason))


@contextmanager
def dispatcher(recorder: Recorder, workers: int = 4, policy: Policy = FAST) -> Iterator[Dispatcher]:
    d = Dispatcher(recorder.handler, recorder.abandon, workers=workers, policy=policy)
    try:
        yield d
    finally:
        d.close()


def jobs(lane: str, n: int, limit: int = 2) -> list[Job]:
    return [Job(lane, (lane, i), limit) for i in range(n)]


def test_every_job_runs_once_and_drain_waits_for_them() -> None:
    recorder = Recorder(lambda job: JobResult("done"))
    with dispatcher(recorder) as d:
        for job in jobs("a", 20) + jobs("b", 20):
            assert d.submit(job)
        d.drain()
        assert sorted(ident for _, ident, _ in recorder.runs) == sorted([("a", i) for i in range(20)]
                                                                        + [("b", i) for i in range(20)])  # fmt: skip
    assert recorder.abandoned == []


def test_a_lane_never_runs_more_jobs_than_its_limit() -> None:
    gate = threading.Event()

    def slow(job: Job) -> JobResult:
        gate.wait(0.02)  # hold the slot a little so that concurrency would show
        return JobResult("done")

    recorder = Recorder(slow)
    with dispatcher(recorder, workers=8) as d:
        for job in jobs("limited", 30, limit=2) + jobs("wide", 30, limit=5):
            d.submit(job)
        d.drain()
    assert recorder.most_active["limited"] == 2
    assert 2 < recorder.most_active["wide"] <= 5


def test_lanes_take_turns_so_a_long_queue_does_not_starve_a_short_one() -> None:
    recorder = Recorder(lambda job: JobResult("done"))
    with dispatcher(recorder, workers=1) as d:
        for job in jobs("busy", 50, limit=1):
            d.submit(job)
        d.submit(Job("small", ("small", 0), 1))
        d.drain()
    order = [lane for lane, _, _ in recorder.runs]
    assert order.index("small") <= 2


def test_a_duplicate_ident_is_not_queued_twice() -> None:
    release = threading.Event()
    recorder = Recorder(lambda job: (release.wait(5), JobResult("done"))[1])
    with dispatcher(recorder) as d:
        assert d.submit(Job("a", "same", 1))
        assert not d.submit(Job("a", "same", 1))
        assert d.busy("same")
        release.set()
        d.drain()
        assert not d.busy("same")
        assert d.submit(Job("a", "same", 1))  # finished: it may come again
        d.drain()
    assert len(recorder.runs) == 2


def test_a_retried_job_waits_in_its_lane_not_in_a_worker() -> None:
    policy = Policy(backoff=0.3, max_backoff=0.3, breaker_threshold=100)

    def flaky(job: Job) -> JobResult:
        if job.lane == "flaky" and job.tries < 3:
            return JobResult("retry", error="451 try later")
        return JobResult("done")

    recorder = Recorder(flaky)
    with dispatcher(recorder, workers=1, policy=policy) as d:
        d.submit(Job("flaky", "f", 1))
        for job in jobs("other", 5, limit=1):
            d.submit(job)
        d.drain()
    flaky_runs = [tries for lane, _, tries in recorder.runs if lane == "flaky"]
    assert flaky_runs == [1, 2, 3]
    # one worker only, yet the other lane's jobs all ran while the flaky job waited for its backoff
    order = [lane for lane, _, _ in recorder.runs]
    assert order.index("other") < order.index("flaky", 1)
    assert order[-1] == "flaky"


def test_a_failing_destination_is_paused_and_its_queue_is_abandoned_not_tried() -> None:
    def dead(job: Job) -> JobResult:
        if job.lane == "dead":
            return JobResult("retry", destination_fault=True, error="connection refused")
        return JobResult("done")

    recorder = Recorder(dead)
    with dispatcher(recorder, workers=2) as d:
        for job in jobs("dead", 40, limit=1) + jobs("alive", 10):
            d.submit(job)
        d.drain()
        assert "dead" in d.paused()
    dead_runs = [r for r in recorder.runs if r[0] == "dead"]
    assert len(dead_runs) == FAST.breaker_threshold  # not one try per queued job
    assert len([r for r in recorder.runs if r[0] == "alive"]) == 10
    assert len(recorder.abandoned) == 40
    assert all("paused" in reason and "connection refused" in reason for _, reason in recorder.abandoned)


def test_a_login_refused_pauses_at_once() -> None:
    def refused(job: Job) -> JobResult:
        return JobResult("failed", destination_fault=True, pause_long=True, error="login refused")

    recorder = Recorder(refused)
    with dispatcher(recorder, workers=1) as d:
        for job in jobs("bad", 10, limit=1):
            d.submit(job)
        d.drain()
        remaining, error = d.paused()["bad"]
    assert len(recorder.runs) == 1
    assert remaining > FAST.max_pause - 5 and error == "login refused"
    assert len(recorder.abandoned) == 9


def test_after_the_pause_one_job_probes_and_success_closes_the_breaker() -> None:
    """The daemon's case: the paused lane's jobs wait, the probe succeeds, the rest follow."""
    policy = Policy(backoff=0.01, breaker_threshold=1, breaker_pause=0.2, max_pause=0.2)
    state = {"down": True}

    def recovering(job: Job) -> JobResult:
        if state["down"]:
            state["down"] = False  # the server comes back during the pause
            return JobResult("retry", destination_fault=True, error="timed out")
        return JobResult("done")

    recorder = Recorder(recovering)
    with dispatcher(recorder, workers=4, policy=policy) as d:  # a daemon: no drain, the pause is waited out
        for job in jobs("srv", 6, limit=3):
            d.submit(job)
        deadline = time.monotonic() + 10
        while any(d.busy(("srv", i)) for i in range(6)):
            assert time.monotonic() < deadline, "the paused lane never resumed"
            time.sleep(0.01)
        assert d.paused() == {}
    assert recorder.abandoned == []
    assert len({ident for _, ident, _ in recorder.runs}) == 6
    assert recorder.most_active["srv"] <= 3


def test_stop_abandons_the_queue_and_lets_running_jobs_finish() -> None:
    started, release = threading.Event(), threading.Event()

    def blocking(job: Job) -> JobResult:
        started.set()
        release.wait(5)
        return JobResult("done")

    recorder = Recorder(blocking)
    with dispatcher(recorder, workers=1) as d:
        for job in jobs("a", 5, limit=1):
            d.submit(job)
        assert started.wait(5)
        d.stop()
        assert not d.submit(Job("a", "late", 1))
        assert not d.wait_idle(0.05)
        release.set()
        assert d.wait_idle(5)
    assert len(recorder.runs) == 1
    assert len(recorder.abandoned) == 4
    assert all("stopping" in reason for _, reason in recorder.abandoned)


def test_a_handler_that_raises_does_not_kill_the_worker() -> None:
    def buggy(job: Job) -> JobResult:
        if job.ident == ("a", 0):
            raise RuntimeError("bug")
        return JobResult("done")

    recorder = Recorder(buggy)
    with dispatcher(recorder, workers=1) as d:
        for job in jobs("a", 3, limit=1):
            d.submit(job)
        d.drain()
    assert len(recorder.runs) == 3


@pytest.mark.parametrize("tries", [1, 2, 5, 30])
def test_backoff_doubles_with_jitter_and_is_capped(tries: int) -> None:
    policy = Policy(backoff=2.0, max_backoff=300.0)
    base = min(2.0 * 2 ** (tries - 1), 300.0)
    for _ in range(50):
        assert base * 0.5 <= policy.delay(tries) <= base * 1.5


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    # one function for the lanes' retries (Policy.delay) and the webhooks' (webhooks/outbox.py)
    for attempt, full in ((1, 10.0), (2, 20.0), (3, 40.0), (9, 100.0), (500, 100.0)):
        delays = [backoff_delay(attempt, 10.0, 100.0) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays), (attempt, delays)
        assert len(set(delays)) > 1  # jitter: notifications failing together do not come back together


def test_a_lane_never_waits_longer_than_max_backoff() -> None:
    # the jitter of Policy.delay was +-50 % around the capped delay: up to 1.5 x max_backoff
    policy = Policy(backoff=2.0, max_backoff=300.0)

    assert max(policy.delay(tries) for tries in (9, 10, 30, 1000) for _ in range(50)) <= 300.0

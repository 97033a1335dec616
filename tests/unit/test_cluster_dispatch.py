"""The dispatcher's side of a shared ledger: a job that was not tried (its claim refused with a
wait, no free connection slot) waits and runs again without counting a try or touching the breaker;
a lane held for a slot is waited for by a batch run; a pause of the shared breaker is a pause."""

from __future__ import annotations

import threading

from test_dispatch import FAST, Recorder, dispatcher

from ftpexport.dispatch import Job, JobResult


def test_a_job_not_tried_runs_again_without_counting_a_try_or_touching_the_breaker() -> None:
    refusals = iter([JobResult("retry", tried=False, delay=0.001, error="retry backoff")] * 5)
    recorder = Recorder(lambda job: next(refusals, JobResult("done")))
    with dispatcher(recorder, policy=FAST) as d:  # breaker_threshold 3: five failures would pause it
        d.submit(Job("a", 1, 1))
        d.drain()
        lane = d.lanes()["a"]
    assert [tries for _, _, tries in recorder.runs] == [1] * 6  # every run was the first try
    assert (lane.trips, lane.paused_for, lane.last_error) == (0, 0.0, None)
    assert recorder.abandoned == []


def test_a_retry_waits_the_delay_it_was_given() -> None:
    runs: list[str] = []
    recorder = Recorder(lambda job: runs.append("x") or JobResult("retry" if len(runs) == 1 else "done", delay=0.0))
    with dispatcher(recorder, policy=FAST) as d:
        d.submit(Job("a", 1, 1))
        d.drain()
    assert [tries for _, _, tries in recorder.runs] == [1, 2]


def test_a_held_lane_is_waited_for_by_drain_not_abandoned() -> None:
    held = threading.Event()

    def behaviour(job: Job) -> JobResult:
        if not held.is_set():
            held.set()
            d.hold("a", 0.01)  # every slot is open elsewhere: no job of the lane starts for a moment
            return JobResult("retry", tried=False, delay=0.0)
        return JobResult("done")

    recorder = Recorder(behaviour)
    with dispatcher(recorder) as d:
        d.submit(Job("a", 1, 1))
        d.drain()
        assert d.paused() == {}
    assert recorder.abandoned == [] and len(recorder.runs) == 2


def test_a_pause_of_the_shared_breaker_pauses_the_lane() -> None:
    def behaviour(job: Job) -> JobResult:
        d.pause("a", 300.0, "530 refused (seen by another host)")
        return JobResult("retry", tried=False, delay=0.0)

    recorder = Recorder(behaviour)
    with dispatcher(recorder) as d:
        d.submit(Job("a", 1, 1))
        d.drain()  # a batch run gives up on a paused destination
        paused = d.paused()
    assert list(paused) == ["a"] and paused["a"][1] == "530 refused (seen by another host)"
    [(ident, reason)] = recorder.abandoned
    assert ident == 1 and "the destination is paused" in reason and "seen by another host" in reason

"""collector.py: the process entry point makes the cycle collector run rarely while a command starts,
and ``run`` freezes what start-up made before its first record (issue 16, start-up). Checked in a
fresh process (this one runs commands in-process, which must leave the collector alone); no timing."""

from __future__ import annotations

import gc
from pathlib import Path

from fresh_process import empty_run, run_cli

from ftpexport import collector


def test_a_run_freezes_what_its_start_up_made_and_gives_the_collector_its_thresholds_back(tmp_path: Path) -> None:
    ended = run_cli("-q", *empty_run(tmp_path), "--json")

    assert ended.status == 0
    assert ended.frozen > 10_000  # the modules, the models, ...
    assert ended.threshold == ended.default  # the run's own work is collected as usual


def test_a_command_that_does_not_say_it_started_keeps_collecting_rarely() -> None:
    ended = run_cli("--version")

    assert ended.status == 0
    assert ended.frozen == 0
    assert ended.threshold[0] == collector.STARTUP_THRESHOLD


def test_started_without_starting_leaves_the_collector_alone() -> None:
    # a command run in-process (the tests' CliRunner, a library) never froze this process's objects
    before = (gc.get_freeze_count(), gc.get_threshold())

    collector.started()

    assert (gc.get_freeze_count(), gc.get_threshold()) == before

"""collector.py: the process entry point makes the cycle collector run rarely while a command starts,
and ``run`` freezes what start-up made before its first record (issue 16, start-up). Checked in a
fresh process (this one runs commands in-process, which must leave the collector alone); no timing."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

from ftpexport import collector

_PROBE = """
import gc, json, sys
from ftpexport.cli import main
default = json.loads(sys.argv[2])
sys.argv = ["ftpexport", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status, "frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(),
                  "default": default}), file=sys.stderr)
"""


def _probe(argv: list[str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(gc.get_threshold())],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    found: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return found


def _empty_run(tmp_path: Path) -> list[str]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "acme.yaml").write_text(
        "client_id: acme\ndestinations:\n  - name: dms\n    url: ftp://u@127.0.0.1:21/in\n"
        "    password: ${HOME}\n    allow_plain_ftp: true\n"
    )
    (tmp_path / "inbox").mkdir()
    return ["-q", "run", str(tmp_path / "inbox"), "--rules", str(rules),
            "--state", str(tmp_path / "state" / "ledger.sqlite3"), "--json"]  # fmt: skip


def test_a_run_freezes_what_its_start_up_made_and_gives_the_collector_its_thresholds_back(tmp_path: Path) -> None:
    found = _probe(_empty_run(tmp_path))

    assert found["status"] == 0
    assert isinstance(found["frozen"], int) and found["frozen"] > 10_000  # the modules, the models, ...
    assert found["threshold"] == found["default"]  # the run's own work is collected as usual


def test_a_command_that_does_not_say_it_started_keeps_collecting_rarely(tmp_path: Path) -> None:
    found = _probe(["--version"])

    assert found["status"] == 0
    assert found["frozen"] == 0
    threshold = found["threshold"]
    assert isinstance(threshold, list) and threshold[0] == collector.STARTUP_THRESHOLD


def test_started_without_starting_leaves_the_collector_alone() -> None:
    # a command run in-process (the tests' CliRunner, a library) never froze this process's objects
    before = (gc.get_freeze_count(), gc.get_threshold())

    collector.started()

    assert (gc.get_freeze_count(), gc.get_threshold()) == before

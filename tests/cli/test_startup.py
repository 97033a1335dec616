"""What a command imports before it does anything (issue 16: `--version` in at most 0.3 s, measured
by benchmarks/startup.py; no timing here): `--version` and a reading command load neither the
rules (pydantic, Jinja), nor the transports (paramiko), nor the cipher of the secrets store."""

from __future__ import annotations

from pathlib import Path

import pytest
from fresh_process import empty_run, run_cli

#: what only the commands that export, check rules or open the secrets store need
HEAVY = ("pydantic", "jinja2", "paramiko", "cryptography", "rich", "ftpexport.rules", "ftpexport.pipeline")


def _imported(*args: str) -> frozenset[str]:
    return run_cli(*args).modules


@pytest.mark.parametrize(
    "args", [["--version"], ["status", "--state", "{tmp}/ledger.sqlite3"]], ids=["version", "status"]
)
def test_version_and_status_load_no_heavy_module(args: list[str], tmp_path: Path) -> None:
    modules = _imported(*[a.format(tmp=tmp_path) for a in args])

    assert "ftpexport.cli" in modules
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert loaded == []


def test_a_run_without_a_terminal_does_not_load_rich(tmp_path: Path) -> None:
    # cron, a pipe, --json: plain lines or nothing; the live display (rich) is for a terminal only
    for extra in (["--json"], []):  # stderr is a pipe here
        modules = _imported(*empty_run(tmp_path, f"ledger{len(extra)}.sqlite3"), *extra)
        assert "ftpexport.pipeline" in modules  # it did run
        assert sorted(m for m in modules if m.split(".")[0] == "rich" or m == "ftpexport.progress_live") == []

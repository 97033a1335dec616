"""What a command imports before it does anything (issue 16: `--version` in at most 0.3 s, measured
by benchmarks/startup.py; no timing here): `--version` and a reading command load neither the
rules (pydantic, Jinja), nor the transports (paramiko), nor the cipher of the secrets store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from paths import ROOT

#: what only the commands that export, check rules or open the secrets store need
HEAVY = ("pydantic", "jinja2", "paramiko", "cryptography", "rich", "ftpexport.rules", "ftpexport.pipeline")

_PROBE = """
import json, sys
from ftpexport.cli import main
sys.argv = ["ftpexport", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _imported(*args: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], cwd=ROOT, capture_output=True,
                            text=True, check=True)  # fmt: skip
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


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
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "acme.yaml").write_text(
        "client_id: acme\ndestinations:\n  - name: dms\n    url: ftp://u@127.0.0.1:21/in\n"
        "    password: ${HOME}\n    allow_plain_ftp: true\n"
    )
    (tmp_path / "inbox").mkdir()
    common = ["run", str(tmp_path / "inbox"), "--rules", str(rules)]

    for extra in (["--json"], []):  # stderr is a pipe here
        modules = _imported(*common, "--state", str(tmp_path / f"ledger{len(extra)}.sqlite3"), *extra)
        assert "ftpexport.pipeline" in modules  # it did run
        assert sorted(m for m in modules if m.split(".")[0] == "rich" or m == "ftpexport.progress_live") == []

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

"""A command of the CLI run in a fresh Python process (``ftpexport.cli.main``, as the console script
runs it), and what that process was at its end: exit status, imported modules, garbage collector.

For the start-up tests (what a command imports, what it leaves the collector with), which cannot run
in the tests' own process: it has imported everything already. No timing here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from paths import ROOT

_PROBE = """
import gc, json, sys
from ftpexport.cli import main
default = gc.get_threshold()
sys.argv = ["ftpexport", *json.loads(sys.argv[1])]
status = 0
try:
    main()
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status, "modules": sorted(sys.modules), "frozen": gc.get_freeze_count(),
                  "threshold": gc.get_threshold(), "default": default}), file=sys.stderr)
"""

#: a rule file with one plain FTP destination that no test connects to
RULE_FILE = (
    "client_id: acme\ndestinations:\n  - name: dms\n    url: ftp://u@127.0.0.1:21/in\n"
    "    password: ${HOME}\n    allow_plain_ftp: true\n"
)


@dataclass(frozen=True)
class Ended:
    """What the process was when the command ended."""

    status: object
    modules: frozenset[str]
    #: objects in the collector's permanent generation (``gc.freeze``)
    frozen: int
    threshold: tuple[int, ...]
    #: the thresholds before the command ran (CPython's)
    default: tuple[int, ...]


def run_cli(*args: str) -> Ended:
    """``ftpexport ARGS`` in a fresh process (in the repository's folder); raises if it crashed."""
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120)  # fmt: skip
    found = json.loads(done.stderr.strip().splitlines()[-1])
    return Ended(found["status"], frozenset(found["modules"]), found["frozen"], tuple(found["threshold"]),
                 tuple(found["default"]))  # fmt: skip


def empty_run(tmp_path: Path, ledger: str = "ledger.sqlite3") -> list[str]:
    """The arguments of ``run`` on an empty inbox with ``RULE_FILE`` and a new ledger, all in ``tmp_path``."""
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "acme.yaml").write_text(RULE_FILE)
    (tmp_path / "inbox").mkdir(exist_ok=True)
    return ["run", str(tmp_path / "inbox"), "--rules", str(rules), "--state", str(tmp_path / ledger)]

"""What `ftpexport run` imports on an empty inbox (issue 16, start-up): nothing that only a webhook
request needs. Checked in a fresh process, since this one has imported them already;
no timing here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: loaded when a webhook is sent (the HTTPS client), never by a run that sends none
LAZY = ("ftpexport.webhooks.client", "http.client")

_PROBE = """
import json, sys
from ftpexport.cli import main
sys.argv = ["ftpexport", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _run_modules(tmp_path: Path, *extra: str) -> tuple[object, set[str]]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "acme.yaml").write_text(
        "client_id: acme\ndestinations:\n  - name: dms\n    url: ftp://u@127.0.0.1:21/in\n"
        "    password: ${HOME}\n    allow_plain_ftp: true\n"
    )
    (tmp_path / "inbox").mkdir()
    argv = ["-q", "run", str(tmp_path / "inbox"), "--rules", str(rules),
            "--state", str(tmp_path / "state" / "ledger.sqlite3"), *extra]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    found = json.loads(done.stderr.strip().splitlines()[-1])
    return found["status"], set(found["modules"])


def test_a_run_on_an_empty_inbox_loads_no_webhook_client(tmp_path: Path) -> None:
    status, modules = _run_modules(tmp_path, "--json")

    assert status == 0
    # it did run, with its notifier (which sends what earlier runs left pending in the ledger)
    assert {"ftpexport.pipeline", "ftpexport.webhooks.outbox"} <= modules
    assert sorted(m for m in LAZY if m in modules) == []

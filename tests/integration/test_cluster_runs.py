"""Two ``ftpexport run`` processes on one PostgreSQL ledger send the same inbox to one FTP server:
every file arrives once (one final rename per name, counted at the server), the destination's
``max_connections`` holds for both together (sessions counted at the server, idle ones included),
and every delivery is in the ledger once, delivered.

Each process runs what ``ftpexport run`` runs (``daemon.export_once``) in a fresh interpreter, so
the test does not depend on the command line's handling of a URL ``--state``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from records import vehicle, vin, write_record
from rulefiles import ftp_destination, rule_document, write_rules
from servers import pyftpdlib_server

from ftpexport.ledger import open_ledger

pytestmark = pytest.mark.integration
# the PostgreSQL backend (engineer pg's ftpexport/ledger/postgres/) until it is on the branch
pytest.importorskip("ftpexport.ledger.postgres", reason="the PostgreSQL ledger backend is not on this branch yet")

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 16
MAX_CONNECTIONS = 2

#: what ``ftpexport run`` does, in a process of its own: argv = inbox rules state; prints the outcomes
RUN = """
import json, sys
from pathlib import Path
from ftpexport.daemon import export_once
from ftpexport.folders import inbox_folders
from ftpexport.pipeline import Options
from ftpexport.progress import Tally
from ftpexport.rules import load_rules

inbox, rules, state = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
summary = export_once(inbox_folders(inbox, "run"), load_rules(rules), state, Options(jobs=4, backoff=0.2, lease=6.0),
                      lambda: None, grace=5.0, notify_wait=0.0, progress=Tally(), announce=None)
print(json.dumps([[o.record_id, o.result, o.error] for o in summary.outcomes]))
"""


class Recorder:
    """What the FTP server saw: final renames by target, sessions open now and at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.renamed: Counter[str] = Counter()
        self.open = 0
        self.most = 0

    def handler_attributes(self) -> dict[str, Any]:
        from pyftpdlib.handlers import FTPHandler

        recorder = self

        def on_connect(handler: Any) -> None:
            with recorder.lock:
                recorder.open += 1
                recorder.most = max(recorder.most, recorder.open)

        def on_disconnect(handler: Any) -> None:
            with recorder.lock:
                recorder.open -= 1

        def ftp_RNTO(handler: Any, path: str) -> Any:
            with recorder.lock:
                recorder.renamed[os.path.basename(path)] += 1
            return FTPHandler.ftp_RNTO(handler, path)

        return {"on_connect": on_connect, "on_disconnect": on_disconnect, "ftp_RNTO": ftp_RNTO}


def test_two_runs_on_one_postgresql_deliver_each_record_once(pg_url: str, tmp_path: Path) -> None:
    recorder = Recorder()
    inbox = tmp_path / "inbox"
    for n in range(1, RECORDS + 1):
        images = {f"{i:02d}.jpg": b"\xff\xd8" + os.urandom(30_000) + b"\xff\xd9" for i in (1, 2)}
        write_record(inbox / f"veh-{n}", images, vehicle(id=f"veh-{n}", vin=vin(n)))
    with pyftpdlib_server("ftp", **recorder.handler_attributes()) as server:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CLUSTER_FTP_PASSWORD": server.password}
        rules = tmp_path / "rules"
        destination = ftp_destination("dms", server, "dms", "CLUSTER_FTP_PASSWORD", max_connections=MAX_CONNECTIONS)
        write_rules(rules, rule_document("acme-motors", [destination]))
        command = [sys.executable, "-c", RUN, str(inbox), str(rules), pg_url]
        pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        runs = [subprocess.Popen(command, env=env, cwd=tmp_path, **pipes) for _ in range(2)]
        outputs = [run.communicate(timeout=300) for run in runs]
        uploaded = sorted(p.name for p in (server.root / "dms").iterdir())

    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr
    outcomes = [tuple(o) for stdout, _ in outputs for o in json.loads(stdout.splitlines()[-1])]
    delivered = sorted(record for record, result, _ in outcomes if result == "delivered")
    # each record delivered by exactly one of the two; the other left it ("being sent by", "unchanged")
    assert delivered == sorted(f"veh-{n}" for n in range(1, RECORDS + 1))
    assert all(result in ("delivered", "deferred", "unchanged") for _, result, _ in outcomes), outcomes
    # one final rename per name, counted at the server; nothing left half way
    names = [f"{vin(n)}.zip" for n in range(1, RECORDS + 1)]
    assert dict(recorder.renamed) == dict.fromkeys(names, 1)
    assert uploaded == sorted(names)
    assert recorder.most <= MAX_CONNECTIONS  # both processes together, idle connections included
    with open_ledger(pg_url) as ledger:
        rows = sorted((d.record_id, d.status) for d in ledger.deliveries())
        assert rows == sorted((f"veh-{n}", "delivered") for n in range(1, RECORDS + 1))
        # and no attempt failed: a wait for a connection slot or a claim is not a failure
        trails = {d.record_id: [a["result"] for a in ledger.attempts(d.id)] for d in ledger.deliveries()}
        assert trails == {f"veh-{n}": ["delivered"] for n in range(1, RECORDS + 1)}
        assert ledger.coordination.held() == []

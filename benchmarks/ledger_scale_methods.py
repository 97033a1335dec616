"""The Ledger methods on the big file, in process (``benchmarks.ledger_scale``): each call timed, with
the SQL it ran (sqlite3's trace callback) and that SQL's ``EXPLAIN QUERY PLAN``, where full table
scans, full index scans and temporary sorts are noted."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .product import ROOT
from .report import median

DAY = timedelta(days=1)


def _plan(db: sqlite3.Connection, sql: str) -> list[str]:
    try:
        return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
    except sqlite3.Error as exc:
        return [f"(no plan: {exc})"]


def _scan_notes(plan: list[str]) -> list[str]:
    notes = []
    for step in plan:
        if step.startswith("SCAN ") and " INDEX " not in step and "CONSTANT ROW" not in step:
            notes.append("FULL TABLE SCAN " + step[5:])
        elif step.startswith("SCAN ") and " INDEX " in step:
            notes.append("full index scan " + step[5:])
        elif "TEMP B-TREE" in step:
            notes.append(step.lower())
    return notes


def time_methods(path: Path, repeat: int, slow_ms: float = 50.0) -> tuple[list[list[Any]], list[str]]:
    sys.path.insert(0, str(ROOT))
    from ftpexport.ledger import open_ledger

    t0 = time.perf_counter()
    ledger = open_ledger(path)
    opened = time.perf_counter() - t0
    db: sqlite3.Connection = ledger._db
    probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    one = probe.execute("SELECT * FROM deliveries WHERE status = 'delivered' LIMIT 1 OFFSET 4321").fetchone()
    cols = [c[0] for c in probe.execute("SELECT * FROM deliveries LIMIT 0").description]
    sample = dict(zip(cols, one, strict=True))
    newest = probe.execute("SELECT MAX(created_at) FROM deliveries").fetchone()[0]
    day = newest[:10]
    since = datetime.fromisoformat(day + "T00:00:00+00:00")
    client = sample["client_id"]
    new_id = [0]

    def open_new() -> Any:
        new_id[0] += 1
        return ledger.open_delivery(
            record_id=f"bench-new-{new_id[0]}-{time.time_ns()}",
            content_hash="0" * 64,
            client_id=client,
            destination=sample["destination"],
            record_path="/data/inbox/bench-new",
            vin="WVWZZZ1JZXW000001",
            user_id="u-1",
        )

    def attempt_cycle() -> Any:
        delivery = open_new()
        attempt = ledger.start_attempt(delivery.id, "benchcorr")
        ledger.succeed(delivery.id, attempt, ["incoming/x.zip"], 10)
        return delivery

    calls: list[tuple[str, Callable[[], Any]]] = [
        ("counts()", ledger.counts),
        ("routes()", ledger.routes),
        (f"routes(client_id={client})", lambda: ledger.routes(client_id=client)),
        ("routes(since=last day)", lambda: ledger.routes(since=since.isoformat())),
        ("deliveries(status=failed, limit=50)", lambda: ledger.deliveries(status="failed", limit=50)),
        ("deliveries(limit=50)", lambda: ledger.deliveries(limit=50)),
        (f"deliveries(client_id={client}, limit=50)", lambda: ledger.deliveries(client_id=client, limit=50)),
        ("oldest_pending()", ledger.oldest_pending),
        ("pending_record_paths()", ledger.pending_record_paths),
        ("find(known)", lambda: ledger.find(sample["record_id"], sample["content_hash"], sample["destination"])),
        ("find(unknown)", lambda: ledger.find("nope", "0" * 64, sample["destination"])),
        ("get(id)", lambda: ledger.get(sample["id"])),
        ("attempts(id)", lambda: ledger.attempts(sample["id"])),
        ("file_states(id)", lambda: ledger.file_states(sample["id"])),
        (f"history(client_id={client}, one day)",
         lambda: ledger.history(client_id=client, since=since.isoformat(), until=(since + DAY).isoformat())),
        ("history(one day, all clients)",
         lambda: ledger.history(since=since.isoformat(), until=(since + DAY).isoformat())),
        ("delivered(one day)", lambda: ledger.delivered(since=since.isoformat(), until=(since + DAY).isoformat())),
        (f"delivered(one day, client_id={client})",
         lambda: ledger.delivered(since=since.isoformat(), until=(since + DAY).isoformat(), client_id=client)),
        ("due_notifications()", ledger.due_notifications),
        ("open_delivery(new)", open_new),
        ("open_delivery(existing)", lambda: ledger.open_delivery(
            record_id=sample["record_id"], content_hash=sample["content_hash"], client_id=client,
            destination=sample["destination"], record_path=sample["record_path"])),
        ("open + start_attempt + succeed", attempt_cycle),
        ("close_interrupted() (run/watch start)", ledger.close_interrupted),
        ("give_up_on_missing(path)", lambda: ledger.give_up_on_missing("/data/inbox/not-there", "bench")),
        ("requeue(record_id=unknown)", lambda: ledger.requeue(record_id="not-there")),
    ]  # fmt: skip
    rows: list[list[Any]] = [["open_ledger(path) (open)", f"{opened * 1000:.1f}", "", "", ""]]
    slow: list[str] = []
    for name, call in calls:
        statements: list[str] = []
        durations = []
        size: Any = ""
        error = None
        for k in range(repeat):
            if k == 0:
                db.set_trace_callback(statements.append)
            t0 = time.perf_counter()
            try:
                value = call()
            except Exception as exc:  # the product changes under us: report, go on
                error = f"{type(exc).__name__}: {exc}"
                break
            finally:
                db.set_trace_callback(None)
            durations.append(time.perf_counter() - t0)
            size = len(value) if isinstance(value, list | dict) else ""
        if error:
            rows.append([name, "error", "", "", error[:120]])
            continue
        sql = [s for s in statements if s.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK")]
        notes: list[str] = []
        for statement in dict.fromkeys(sql):
            notes += _scan_notes(_plan(probe, statement))
        ms = median(durations) * 1000
        rows.append([name, f"{ms:.1f}", size, len(sql), "; ".join(dict.fromkeys(notes))])
        if ms >= slow_ms:
            for statement in list(dict.fromkeys(sql))[:2]:
                slow.append(
                    f"{name}: {ms:.0f} ms\n    {statement[:300]}\n"
                    + "\n".join("      " + step for step in _plan(probe, statement))
                )
    ledger.close()
    probe.close()
    return rows, slow

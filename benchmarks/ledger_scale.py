"""Costs that grow, part 1: the ledger with a million deliveries.

Issue 6, point 5. Builds a ledger with the product's own schema and indexes (``open_ledger(path)``
creates the file), fills it with direct SQL inserts (``--deliveries`` rows over
``--destinations`` destinations: ~2 % pending, ~1 % failed, a few superseded, the rest delivered,
over a year; their attempts and the files journal), then times:

* the commands, as a user runs them (a new process each: ``status``, ``status --json``,
  ``history --client X --day D``, ``report`` when the command exists), next to ``--version``
  (the interpreter and import cost every command pays);
* the Ledger methods on the big file, in process, each with the SQL it ran (captured with
  sqlite3's trace callback, so this stays in step with ftpexport/ledger/) and that SQL's
  ``EXPLAIN QUERY PLAN``: full table scans, full index scans and temporary sorts are listed.

    python -m benchmarks.ledger_scale                          # 1 M deliveries
    python -m benchmarks.ledger_scale --deliveries 100000      # quicker
    python -m benchmarks.ledger_scale --ledger /tmp/big.sqlite3 # keep (and reuse) the file

Exit status 1 only when the ledger cannot be built or a command crashes (exit status > 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .product import ROOT, exit_on_sigterm, ftpexport, machine_note, product_env
from .report import median, table

STATUS_TARGET_S = 1.0
#: candidate indexes for --what-if (not in the product): each aimed at a slow call below
WHAT_IF_DDL = (
    "CREATE INDEX IF NOT EXISTS whatif_newest ON deliveries (updated_at, id)",  # deliveries(limit=N), status --json
    "CREATE INDEX IF NOT EXISTS whatif_delivered ON deliveries (status, delivered_at)",  # delivered(), report
    "CREATE INDEX IF NOT EXISTS whatif_pending_age ON deliveries (status, created_at)",  # oldest_pending()
    "CREATE INDEX IF NOT EXISTS whatif_open_attempts ON attempts (id) WHERE finished_at IS NULL",  # close_interrupted
    "CREATE INDEX IF NOT EXISTS whatif_attempts_by_start ON attempts (started_at)",  # history(day), all clients
)
DAY = timedelta(days=1)


def _destinations(count: int) -> list[tuple[str, str]]:
    """(client, destination key): most clients have one destination, some two."""
    clients = max(1, count * 7 // 8)
    result = []
    for j in range(count):
        client = f"c{j % clients:03d}"
        result.append((client, f"{client}/{'dms' if j < clients else 'backup'}"))
    return result


def build(path: Path, deliveries: int, destinations: int, pending: float, failed: float, seed: int = 1) -> None:
    sys.path.insert(0, str(ROOT))
    from ftpexport.ledger import open_ledger

    open_ledger(path).close()  # the product's schema, indexes and user_version
    rng = random.Random(seed)
    routes = _destinations(destinations)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=365)
    step = (end - start) / deliveries
    superseded = 0.005

    def stamp(t: datetime) -> str:
        return t.isoformat(timespec="milliseconds")

    def rows() -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
        for i in range(1, deliveries + 1):
            client, destination = routes[rng.randrange(len(routes))]
            created = start + step * i
            r = rng.random()
            status = ("pending" if r < pending else "failed" if r < pending + failed
                      else "superseded" if r < pending + failed + superseded else "delivered")  # fmt: skip
            digest = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
            vin = digest[:17].upper()
            corr = digest[-16:]
            tries = {"delivered": 1 + (rng.random() < 0.03), "failed": 4, "pending": rng.randrange(2),
                     "superseded": 1}[status]  # fmt: skip
            updated = created + timedelta(seconds=2 * tries + rng.random() * 5)
            error = None
            if status in ("failed", "pending") and tries:
                error = "550 Permission denied" if status == "failed" else "connection refused (will retry)"
            delivered_at = stamp(updated) if status == "delivered" else None
            remote = json.dumps([f"incoming/{created.date()}/{vin}.zip"]) if status == "delivered" else "[]"
            size = 3_000_000 + rng.randrange(4_000_000)
            delivery = (
                i, f"veh-{i:08d}", digest, client, destination, f"/data/inbox/veh-{i:08d}", status, tries, error,
                remote, size if status == "delivered" else 0, corr, stamp(created), stamp(updated), delivered_at,
                vin, f"u-{rng.randrange(5000)}",
            )  # fmt: skip
            attempts = []
            t = created
            for k in range(tries):
                last = k == tries - 1
                ok = last and status in ("delivered", "superseded")
                attempts.append((i, corr, stamp(t), stamp(t + timedelta(seconds=1.5)),
                                 "delivered" if ok else "failed", None if ok else (error or "timed out"),
                                 size if ok else 0))  # fmt: skip
                t += timedelta(seconds=2)
            files = [(i, json.loads(remote)[0], "published", delivered_at)] if status == "delivered" else []
            yield delivery, attempts, files

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")
    db.execute("BEGIN")
    batch_d: list[tuple[Any, ...]] = []
    batch_a: list[tuple[Any, ...]] = []
    batch_f: list[tuple[Any, ...]] = []

    def flush() -> None:
        db.executemany(
            "INSERT INTO deliveries (id, record_id, content_hash, client_id, destination, record_path, status,"
            " attempts, last_error, remote_paths, bytes, correlation_id, created_at, updated_at, delivered_at,"
            " vin, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            batch_d,
        )
        db.executemany(
            "INSERT INTO attempts (delivery_id, correlation_id, started_at, finished_at, result, error, bytes)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            batch_a,
        )
        db.executemany("INSERT INTO files (delivery_id, remote_path, state, updated_at) VALUES (?, ?, ?, ?)", batch_f)
        batch_d.clear()
        batch_a.clear()
        batch_f.clear()

    for delivery, attempts, files in rows():
        batch_d.append(delivery)
        batch_a += attempts
        batch_f += files
        if len(batch_d) >= 50_000:
            flush()
    flush()
    db.execute("COMMIT")
    db.close()


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


def time_commands(path: Path, repeat: int) -> tuple[list[list[Any]], list[str]]:
    env = product_env()
    probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    client, newest = probe.execute("SELECT client_id, created_at FROM deliveries ORDER BY id DESC LIMIT 1").fetchone()
    probe.close()
    day = newest[:10]
    help_text = subprocess.run(ftpexport("--help"), env=env, capture_output=True, text=True).stdout

    def options(command: str) -> set[str]:
        text = subprocess.run(ftpexport(command, "--help"), env=env, capture_output=True, text=True).stdout
        return set(re.findall(r"--[a-z][a-z-]*", text))

    big = str(path)
    commands: list[list[str]] = [["--version"]]
    status = options("status")
    commands += [
        ["status", "--state", big],
        ["status", "--state", big, "--json"],
        ["status", "--state", big, "--failed"],
        ["status", "--state", big, "--client", client],
    ]
    if "--since" in status:
        commands.append(["status", "--state", big, "--since", "1d"])
    commands += [
        ["history", "--state", big, "--client", client, "--day", day],
        ["history", "--state", big, "--client", client, "--day", day, "--json"],
        ["history", "--state", big, "--day", day],
    ]
    if "\n  report " in help_text:
        report = options("report")
        since = ["--since", "1d"] if "--since" in report else []
        commands.append(["report", "--state", big, *since])
        if "--format" in report:
            commands.append(["report", "--state", big, *since, "--format", "json"])
            if since:
                commands.append(["report", "--state", big, "--since", "30d", "--format", "csv"])
        elif "--json" in report:
            commands.append(["report", "--state", big, *since, "--json"])
    rows = []
    failures = []
    base = None
    for argv in commands:
        times = []
        result = None
        subprocess.run(ftpexport(*argv), env=env, capture_output=True, cwd=ROOT)  # warm-up: caches, .pyc
        for _ in range(repeat if argv != ["--version"] else max(repeat, 5)):
            t0 = time.perf_counter()
            result = subprocess.run(ftpexport(*argv), env=env, capture_output=True, text=True, cwd=ROOT)
            times.append(time.perf_counter() - t0)
        assert result is not None
        wall = median(times)
        if argv == ["--version"]:
            base = wall
        label = "ftpexport " + " ".join(a if a != str(path) else "BIG" for a in argv)
        target = ""
        if argv[0] == "status":
            target = f"< {STATUS_TARGET_S:g} s: {'MET' if wall < STATUS_TARGET_S else 'NOT MET'}"
        rows.append([label, f"{wall:.2f}", f"{wall - (base or 0):.2f}", result.returncode,
                     f"{len(result.stdout.splitlines())} lines", target])  # fmt: skip
        if result.returncode > 2:
            failures.append(f"{label}: exit {result.returncode}: {result.stderr[-500:]}")
        elif result.returncode != 0:
            rows[-1][-1] += f" (stderr: {result.stderr.strip().splitlines()[-1][:80] if result.stderr.strip() else ''})"
    return rows, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=1_000_000, help="rows in deliveries (default 1 000 000)")
    parser.add_argument("--destinations", type=int, default=400, help="destinations (default 400)")
    parser.add_argument("--pending", type=float, default=0.02, help="share pending (default 0.02)")
    parser.add_argument("--failed", type=float, default=0.01, help="share failed (default 0.01)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per call; the median is shown (default 3)")
    parser.add_argument("--ledger", type=Path, help="build here (kept); reused if it exists")
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="also time the methods on a copy with candidate indexes added (WHAT_IF_DDL)",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="run ANALYZE first (the product never does; shows what statistics would change)",
    )
    args = parser.parse_args()
    exit_on_sigterm()
    print(machine_note())
    tmp = None
    if args.ledger is None:
        tmp = tempfile.TemporaryDirectory(prefix="ftpexport-bench-ledger-")
        path = Path(tmp.name) / "ledger.sqlite3"
    else:
        path = args.ledger
    try:
        if not path.exists():
            t0 = time.perf_counter()
            build(path, args.deliveries, args.destinations, args.pending, args.failed)
            print(f"built {path} in {time.perf_counter() - t0:.1f} s")
        db = sqlite3.connect(path)
        if args.analyze:
            db.execute("ANALYZE")
            db.commit()
        counts = dict(db.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall())
        n_attempts = db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
        n_files = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        n_dest = db.execute("SELECT COUNT(DISTINCT destination) FROM deliveries").fetchone()[0]
        indexes = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")]
        analyzed = bool(db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone())
        db.close()
        size = path.stat().st_size + (path.with_name(path.name + "-wal").stat().st_size
                                      if path.with_name(path.name + "-wal").exists() else 0)  # fmt: skip
        print(f"\n== ledger: {sum(counts.values()):,} deliveries {json.dumps(counts)}, {n_attempts:,} attempts,"
              f" {n_files:,} journal rows, {n_dest} destinations, {size / 2**20:.0f} MB;"
              f" ANALYZE statistics: {'yes' if analyzed else 'no'}")  # fmt: skip
        print("indexes: " + ", ".join(indexes))

        print("\n-- commands (a new process each; median of", args.repeat, "runs)")
        rows, failures = time_commands(path, args.repeat)
        print(table(rows, ["command", "wall s", "minus startup", "exit", "output", "target"]))

        print("\n-- Ledger methods on the big file (in process; median of", args.repeat, "calls)")
        method_rows, slow = time_methods(path, args.repeat)
        print(table(method_rows, ["method", "ms", "rows", "SQL", "plan: full scans / temp sorts"]))
        if slow:
            print("\n-- query plans of the calls over 50 ms (first statements)")
            print("\n".join(slow))
        if args.what_if:
            copy = path.with_name(path.stem + "-whatif.sqlite3")
            src = sqlite3.connect(path)
            dst = sqlite3.connect(copy)
            src.backup(dst)
            src.close()
            t0 = time.perf_counter()
            for ddl in WHAT_IF_DDL:
                dst.execute(ddl)
            dst.commit()
            dst.close()
            print(f"\n-- what if: the same methods with candidate indexes ({time.perf_counter() - t0:.1f} s to build):")
            print("\n".join("   " + ddl for ddl in WHAT_IF_DDL))
            try:
                method_rows, _ = time_methods(copy, args.repeat, slow_ms=float("inf"))
                print(table(method_rows, ["method", "ms", "rows", "SQL", "plan: full scans / temp sorts"]))
            finally:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(copy) + suffix).unlink(missing_ok=True)
        for failure in failures:
            print("FAILURE:", failure)
        return 1 if failures else 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())

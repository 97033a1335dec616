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
import json
import re
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .ledger_scale_build import build
from .ledger_scale_methods import time_methods
from .product import ROOT, exit_on_sigterm, ftpexport, machine_note, product_env
from .report import median, table

STATUS_TARGET_S = 1.0
#: candidate indexes for --what-if (not in the product): each aimed at a slow call of time_methods
WHAT_IF_DDL = (
    "CREATE INDEX IF NOT EXISTS whatif_newest ON deliveries (updated_at, id)",  # deliveries(limit=N), status --json
    "CREATE INDEX IF NOT EXISTS whatif_delivered ON deliveries (status, delivered_at)",  # delivered(), report
    "CREATE INDEX IF NOT EXISTS whatif_pending_age ON deliveries (status, created_at)",  # oldest_pending()
    "CREATE INDEX IF NOT EXISTS whatif_open_attempts ON attempts (id) WHERE finished_at IS NULL",  # close_interrupted
    "CREATE INDEX IF NOT EXISTS whatif_attempts_by_start ON attempts (started_at)",  # history(day), all clients
)


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

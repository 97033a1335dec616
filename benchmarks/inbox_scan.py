"""Costs that grow, part 2: an inbox of 50 000 record folders.

Issue 6, point 5. Builds an inbox of ``--records`` complete records (small images: the folder
count is what is measured here; the hashing cost of real image sizes is extrapolated from the
measured sha256 speed), a ledger where every one of them is delivered already (the product's
schema, content hashes computed by the product's ``load_record``), and times:

* ``iter_record_folders`` (+ ``is_complete``) and ``load_record`` over the whole inbox, with a
  cProfile of ``Exporter.prepare`` on a sample: what a record that is already delivered costs;
* ``ftpexport run`` over the inbox where nothing is left to send (all "unchanged");
* the watcher, in process: the first rescan, a periodic rescan when nothing changed, the
  inotify watches it sets, and whether one new record makes it rescan the inbox (the scan
  functions are wrapped with counters);
* ``ftpexport watch`` as a subprocess with a real FTP destination: the latency of a record
  written at start-up, then in steady state, and the CPU spent after a rule file changes.

    python -m benchmarks.inbox_scan                     # 50 000 folders
    python -m benchmarks.inbox_scan --records 5000      # quicker

Exit status 1 when ``run`` does not find every record delivered, or a new record is not delivered.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .ftp_server import ftp_server
from .inbox_scan_watch import watch_subprocess
from .inbox_scan_watcher import watchdog_what_if, watcher_in_process
from .product import ROOT, exit_on_sigterm, ftpexport, machine_note, product_env, run_measured
from .report import median, table
from .synthetic import PASSWORD_ENV, ftp_rule, vin, write_record

sys.path.insert(0, str(ROOT))


def build_inbox(inbox: Path, records: int, clients: int, images: list[int]) -> float:
    t0 = time.perf_counter()
    for i in range(records):
        client = f"c{i % clients:03d}"
        write_record(inbox / f"r{i:06d}", record_id=f"veh-{i:06d}", client_id=client, vin_=vin(i),
                     images=images, user_id=f"u-{i % 5000}", seed=i)  # fmt: skip
    return time.perf_counter() - t0


def build_ledger(state: Path, records: list[Any]) -> float:
    """Every record delivered to its client's destination, through direct SQL on the product's schema."""
    from ftpexport.ledger import now, open_ledger

    t0 = time.perf_counter()
    open_ledger(state).close()
    stamp = now()
    db = sqlite3.connect(state, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO deliveries (record_id, content_hash, client_id, destination, record_path, status, attempts,"
        " remote_paths, bytes, created_at, updated_at, delivered_at, vin, user_id)"
        " VALUES (?, ?, ?, ?, ?, 'delivered', 1, ?, 1000, ?, ?, ?, ?, ?)",
        [(r.id, r.content_hash, r.client_id, f"{r.client_id}/dms", str(r.folder), f'["x/{r.data.vin}.zip"]',
          stamp, stamp, stamp, r.data.vin, r.user_id) for r in records],
    )  # fmt: skip
    db.execute("COMMIT")
    db.close()
    return time.perf_counter() - t0


def sha256_speed() -> float:
    """MB/s of hashlib.sha256 on this machine (data in memory)."""
    data = os.urandom(64 << 20)
    t0 = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    return 64 / (time.perf_counter() - t0)


def profile_prepare(inbox: Path, rules: Path, state: Path, folders: list[Path], top: int) -> tuple[float, str]:
    """cProfile of Exporter.prepare (load, plan, ledger lookups) over ``folders``."""
    from ftpexport.events import Summary
    from ftpexport.ledger import open_ledger
    from ftpexport.pipeline import Exporter, Options
    from ftpexport.rules import load_rules

    ruleset = load_rules(rules)
    with tempfile.TemporaryDirectory() as spool, open_ledger(state) as ledger:
        exporter = Exporter(ruleset, ledger, Options(jobs=1, spool_dir=Path(spool)))
        try:
            profiler = cProfile.Profile()
            summary = Summary()
            t0 = time.perf_counter()
            profiler.enable()
            work = exporter.prepare(folders, summary)
            profiler.disable()
            elapsed = time.perf_counter() - t0
        finally:
            exporter.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    text = out.getvalue()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("   Ordered", "   List reduced"))]
    unchanged = summary.count("unchanged")
    head = f"prepare({len(folders)} folders): {elapsed:.2f} s, {unchanged} unchanged, {len(work)} to send"
    return elapsed, head + "\n" + "\n".join(lines[-(top + 1) :])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000, help="record folders (default 50 000)")
    parser.add_argument("--clients", type=int, default=400, help="clients, one destination each (default 400)")
    parser.add_argument("--images", type=int, default=2, help="images per record (default 2)")
    parser.add_argument("--image-kb", type=int, default=4, help="KB per image (default 4)")
    parser.add_argument("--real-mb", type=float, default=6.0, help="MB of images of a real record, to extrapolate"
                        " the hashing cost (default 6: 20 photos of 300 KB)")  # fmt: skip
    parser.add_argument("--profile-sample", type=int, default=5000, help="folders profiled in prepare (default 5000)")
    parser.add_argument("--settle", type=float, default=1.0, help="watch --settle (default 1.0, the CLI default)")
    parser.add_argument("--workdir", help="parent folder of the work folder (default /dev/shm: quicker to build)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--skip-watch", action="store_true", help="no watcher measurements")
    parser.add_argument("--skip-watch-subprocess", action="store_true", help="no ftpexport watch subprocess")
    parser.add_argument("--what-if", action="store_true", help="also try watchdog with a narrower event mask")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for a new record (default 300)")
    parser.add_argument("--what-if-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    exit_on_sigterm()
    if args.what_if_only:
        print("\n-- what if: the product's watchdog handler with a narrower inotify mask (fresh process)")
        rows = watchdog_what_if(args.what_if_only)
        print(table(rows, ["inotify events asked for", "overflows", "new record: event queued after"]), flush=True)
        return 0
    print(machine_note())

    from ftpexport.record import is_complete, iter_record_folders, load_record

    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="ftpexport-bench-inbox-", dir=args.workdir or shm))
    inbox, rules, state = work / "inbox", work / "rules", work / "state" / "ledger.sqlite3"
    ok = True
    try:
        images = [args.image_kb * 1024] * args.images
        print(f"building {args.records} record folders ({args.images} x {args.image_kb} KB) in {inbox} ...",
              flush=True)  # fmt: skip
        built = build_inbox(inbox, args.records, args.clients, images)
        rows: list[list[Any]] = [["build the inbox (benchmark)", f"{built:.1f} s", ""]]

        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            folders = list(iter_record_folders(inbox))
            times.append(time.perf_counter() - t0)
        rows.append(["iter_record_folders(inbox)", f"{median(times):.2f} s", f"{len(folders)} folders, median of 3"])
        t0 = time.perf_counter()
        complete = sum(is_complete(f) for f in folders)
        rows.append(["is_complete() on each", f"{time.perf_counter() - t0:.2f} s", f"{complete} complete"])
        t0 = time.perf_counter()
        records = [load_record(f) for f in folders]
        load = time.perf_counter() - t0
        hashed = sum(sum(i.size for i in r.images) for r in records)
        rows.append(
            [
                "load_record() on each (validate + hash)",
                f"{load:.1f} s",
                f"{load / len(records) * 1e3:.2f} ms a record, {hashed / 2**20:.0f} MB of images hashed",
            ]
        )
        speed = sha256_speed()
        extra = args.records * args.real_mb / speed
        rows.append([f"  + hashing {args.real_mb:g} MB a record (extrapolated)", f"+{extra:.0f} s",
                     f"sha256 at {speed:.0f} MB/s from memory; more from disk"])  # fmt: skip
        t0 = time.perf_counter()
        state.parent.mkdir(parents=True)
        rows.append(["build the ledger, all delivered (benchmark)", f"{build_ledger(state, records):.1f} s", ""])
        del records

        with ftp_server(work / "ftp-root", ["inbox"]) as ftp:
            rules.mkdir()
            for c in range(args.clients):
                client = f"c{c:03d}"
                (rules / f"{client}.yaml").write_text(ftp_rule(client, "inbox", ftp.port, client))
            env = product_env(**{PASSWORD_ENV: ftp.password})
            import json

            # the first run reads every record (the ledger was built without the folders' signatures)
            # and remembers the folders; the second finds them unchanged without reading them
            for what in ("first run: reads every record", "next run: nothing changed"):
                result = run_measured(ftpexport("run", inbox, "--rules", rules, "--state", state, "--json"),
                                      env=env, control_ports=[ftp.port])  # fmt: skip
                report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
                unchanged = report.get("unchanged")
                rows.append([f"ftpexport run, all delivered already ({what})", f"{result.wall:.1f} s",
                             f"exit {result.returncode}, {unchanged} unchanged, {report.get('delivered')} delivered,"
                             f" CPU {result.cpu:.1f} s, peak RSS {result.peak_rss_kb // 1024} MB"])  # fmt: skip
                ok = ok and result.returncode == 0 and unchanged == args.records
            if not ok:
                print(result.stderr[-3000:])
            print(table(rows, ["inbox of record folders", "time", "note"]))

            sample = folders[: args.profile_sample]
            elapsed, profile = profile_prepare(inbox, rules, state, sample, 25)
            print(f"\n-- cProfile of Exporter.prepare on {len(sample)} folders (all delivered already);"
                  f" whole inbox extrapolated: {elapsed * len(folders) / len(sample):.0f} s")  # fmt: skip
            print(profile)

            if not args.skip_watch:
                w_rows, w_ok = watcher_in_process(inbox, len(folders))
                print("\n-- the watcher, in process (settle 0 for the scans, 0.2 s for run())")
                print(table(w_rows, ["watcher", "value", "note"]))
                ok = ok and w_ok
                if args.what_if:
                    # a process of its own: watchdog shares one inotify descriptor within a process
                    sys.stdout.flush()
                    subprocess.run([sys.executable, "-m", "benchmarks.inbox_scan", "--what-if-only", str(inbox)],
                                   cwd=ROOT, env=product_env(), check=False)  # fmt: skip
            if not args.skip_watch and not args.skip_watch_subprocess:
                s_rows, s_ok = watch_subprocess(inbox, rules, state, env, args.settle, timeout=args.timeout)
                print(f"\n-- ftpexport watch on the {len(folders)}-folder inbox (subprocess, FTP destination)")
                print(table(s_rows, ["ftpexport watch", "value", "note"]))
                ok = ok and s_ok
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

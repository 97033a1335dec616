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
import contextlib
import cProfile
import hashlib
import io
import logging
import os
import pstats
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .ftp_server import ftp_server
from .product import ROOT, cpu_seconds, exit_on_sigterm, ftpexport, machine_note, product_env, run_measured
from .report import median, open_ro, parse_ts, table
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


def _inotify_watches() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                with open(f"/proc/self/fdinfo/{fd}") as f:
                    count += sum(1 for line in f if line.startswith("inotify wd:"))
    return count


class _Counter(logging.Handler):
    """Counts watchdog's "Inotify queue overflowed" log records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.count += 1


def watcher_in_process(inbox: Path, n: int, new_timeout: float = 120.0) -> tuple[list[list[Any]], bool]:
    """The watcher's scans timed directly, then run() with a new record and counters on the scans."""
    import ftpexport.watch as watch

    overflows = _Counter()
    logging.getLogger("watchdog").addHandler(overflows)
    logging.getLogger("watchdog").propagate = False  # counted, not printed

    rows: list[list[Any]] = []
    calls = {"iter_record_folders": 0, "is_complete": 0, "_signature": 0}
    originals = {name: getattr(watch, name) for name in calls}

    def counting(name: str) -> Any:
        original = originals[name]

        def wrapper(*a: Any, **k: Any) -> Any:
            calls[name] += 1
            return original(*a, **k)

        return wrapper

    for name in calls:
        setattr(watch, name, counting(name))
    try:
        exported: list[tuple[float, list[Path]]] = []
        stop = threading.Event()
        w = watch.InboxWatcher(inbox, lambda folders: exported.append((time.monotonic(), list(folders))),
                               stop=stop, settle=0.0, rescan_every=3600)  # fmt: skip
        t0 = time.perf_counter()
        w._rescan()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        w._drain(timeout=0)
        handed = w._ready()
        drain = time.perf_counter() - t0
        t0 = time.perf_counter()
        w._rescan()
        again = time.perf_counter() - t0
        requeued = w._pending.qsize()
        rows += [
            ["first rescan (list + is_complete + stat, queue all)", f"{first:.2f} s", f"{n} folders"],
            ["settle check of the queued folders (_drain + _ready)", f"{drain:.2f} s", f"{len(handed)} ready"],
            ["periodic rescan, nothing changed", f"{again:.2f} s", f"{requeued} queued again (every --rescan s)"],
        ]

        # run(): observer start-up on n folders, first batch, then one new record
        stop = threading.Event()
        exported.clear()
        w = watch.InboxWatcher(inbox, lambda folders: exported.append((time.monotonic(), list(folders))),
                               stop=stop, settle=0.2, rescan_every=3600)  # fmt: skip
        t0 = time.monotonic()
        thread = threading.Thread(target=w.run, daemon=True)
        thread.start()
        while not exported and time.monotonic() - t0 < 600:
            time.sleep(0.01)
        startup = (exported[0][0] - t0) if exported else float("nan")
        first_batch = len(exported[0][1]) if exported else 0
        time.sleep(1.0)  # let the batch settle
        watches = _inotify_watches()
        for name in calls:
            calls[name] = 0
        overflows_before = overflows.count
        new = inbox / "zz-new-in-process"
        written = time.monotonic()
        write_record(new, record_id="veh-new-ip", client_id="c000", vin_=vin(999_999), images=[4096, 4096])
        found = None
        while found is None and time.monotonic() - written < new_timeout:
            found = next((e for e in list(exported) if e[0] >= written and new.resolve() in e[1]), None)
            time.sleep(0.005)
        latency = found[0] - written if found else float("nan")
        batch = found[1] if found else []
        counts = dict(calls)
        overflowed = overflows.count - overflows_before
        stop.set()
        thread.join(timeout=30)
        shutil.rmtree(inbox / "zz-new-in-process", ignore_errors=True)
        rows += [
            ["run(): start to first batch handed over", f"{startup:.2f} s",
             f"{first_batch} folders (observer start + rescan + settle 0.2 s)"],
            ["inotify watches held", watches, "one per record folder (recursive watch)"],
            ["one new record: written to export()", f"{latency:.3f} s" if found else f"not within {new_timeout:g} s",
             f"batch of {len(batch)} folder(s)"],
            ["inotify queue overflows logged by watchdog", f"{overflows.count}",
             f"{overflowed} of them after the new record was written (events lost, watches re-walked)"],
            ["  scans meanwhile", f"iter_record_folders x{counts['iter_record_folders']}",
             f"is_complete x{counts['is_complete']}, _signature x{counts['_signature']}"],
        ]  # fmt: skip
        ok = found is not None
        return rows, ok
    finally:
        for name, original in originals.items():
            setattr(watch, name, original)


def watchdog_what_if(inbox: Path, settle_s: float = 10.0, new_timeout: float = 60.0) -> list[list[Any]]:
    """What if the watcher asked inotify only for the events it uses (no IN_OPEN / IN_ACCESS /
    IN_CLOSE_NOWRITE / IN_MODIFY)? The product's event handler, watchdog's ``event_filter``."""
    import queue

    from watchdog.events import (
        DirCreatedEvent,
        DirDeletedEvent,
        DirMovedEvent,
        FileClosedEvent,
        FileCreatedEvent,
        FileDeletedEvent,
        FileMovedEvent,
    )
    from watchdog.observers import Observer

    from ftpexport.watch import _Enqueue

    overflows = _Counter()
    logging.getLogger("watchdog").addHandler(overflows)
    logging.getLogger("watchdog").propagate = False
    rows: list[list[Any]] = []
    for label, event_filter in (
        ("event_filter: created, closed-after-write, moved, deleted", [
            FileCreatedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent,
            DirCreatedEvent, DirMovedEvent, DirDeletedEvent]),
        ("default mask (as the product)", None),
    ):  # fmt: skip
        pending: queue.Queue[Path] = queue.Queue()
        observer = Observer()
        before = overflows.count
        t0 = time.monotonic()
        observer.schedule(_Enqueue(inbox.resolve(), pending), str(inbox), recursive=True, event_filter=event_filter)
        observer.start()
        time.sleep(settle_s)
        while not pending.empty():
            pending.get_nowait()
        new = inbox / f"zz-what-if-{len(rows)}"
        written = time.monotonic()
        write_record(new, record_id=f"veh-what-if-{len(rows)}", client_id="c000", vin_=vin(777_000 + len(rows)),
                     images=[4096, 4096])  # fmt: skip
        latency = None
        while latency is None and time.monotonic() - written < new_timeout:
            try:
                folder = pending.get(timeout=0.1)
            except queue.Empty:
                continue
            if folder == new.resolve() and (folder / "vehicle.json").exists():
                latency = time.monotonic() - written
        observer.stop()
        observer.join(timeout=30)
        shutil.rmtree(new, ignore_errors=True)
        rows.append([label, f"{overflows.count - before} overflows in {time.monotonic() - t0:.0f} s",
                     f"{latency * 1000:.1f} ms" if latency is not None else f"lost (> {new_timeout:g} s)"])  # fmt: skip
    return rows


def _wait_delivered(state: Path, record_id: str, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            db = open_ro(state)
            try:
                row = db.execute(
                    "SELECT delivered_at FROM deliveries WHERE record_id = ? AND status = 'delivered'", (record_id,)
                ).fetchone()
            finally:
                db.close()
            if row:
                return parse_ts(row[0])
        time.sleep(0.02)
    return None


def _busy_cpu(pid: int, quiet: float = 2.0, limit: float = 120.0) -> tuple[float, float, bool]:
    """CPU seconds and wall seconds until the process has been idle (< 5 % CPU) for ``quiet`` seconds,
    or ``limit`` seconds passed (then the last value is False)."""
    start_cpu, t0 = cpu_seconds(pid), time.monotonic()
    last_cpu, last_busy = start_cpu, t0
    while time.monotonic() - t0 < limit:
        time.sleep(0.25)
        cpu = cpu_seconds(pid)
        if cpu - last_cpu > 0.0125:
            last_busy = time.monotonic()
        last_cpu = cpu
        if time.monotonic() - last_busy >= quiet:
            return last_cpu - start_cpu, last_busy - t0, True
    return last_cpu - start_cpu, time.monotonic() - t0, False


def _overflows(log_path: Path) -> int:
    try:
        return log_path.read_text(errors="replace").count("Inotify queue overflowed; reconciling")
    except OSError:
        return 0


def watch_subprocess(inbox: Path, rules: Path, state: Path, env: dict[str, str], settle: float,
                     timeout: float) -> tuple[list[list[Any]], bool]:  # fmt: skip
    rows: list[list[Any]] = []
    log_path = state.with_name("watch.log")

    def delivered_row(label: str, record_id: str, written: float, note: str) -> bool:
        delivered = _wait_delivered(state, record_id, timeout)
        value = f"{delivered - written:.2f} s" if delivered else f"not within {timeout:g} s"
        rows.append([label, value, f"{note}; watchdog overflows so far: {_overflows(log_path)}"])
        return delivered is not None

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(ftpexport("watch", inbox, "--rules", rules, "--state", state, "--settle", settle),
                                env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        ok = True
        try:
            written = write_record(inbox / "zz-new-1", record_id="veh-new-1", client_id="c000", vin_=vin(888_001),
                                   images=[4096, 4096])  # fmt: skip
            ok = delivered_row("record written at start-up: delivered after", "veh-new-1", written,
                               "start-up: observer, rescan, load + hash of every record")  # fmt: skip
            cpu, wall, idle = _busy_cpu(proc.pid, limit=60)
            rows.append(["after that, until idle (< 5 % CPU for 2 s)",
                         f"{cpu:.1f} s CPU in {wall:.0f} s" + ("" if idle else ": NEVER IDLE"),
                         f"watchdog overflows so far: {_overflows(log_path)}"])  # fmt: skip
            for k in (2, 3):
                written = write_record(inbox / f"zz-new-{k}", record_id=f"veh-new-{k}", client_id="c000",
                                       vin_=vin(888_000 + k), images=[4096, 4096])  # fmt: skip
                ok = delivered_row(f"new record {k - 1}: delivered after", f"veh-new-{k}", written,
                                   f"--settle {settle:g}, --rescan 60") and ok  # fmt: skip
                time.sleep(0.5)
            rule = rules / "c001.yaml"
            before = cpu_seconds(proc.pid)
            rule.write_text(rule.read_text() + "# touched\n")
            time.sleep(6)  # housekeeping (every 5 s) notices the change and forgets every record
            _, wall, idle = _busy_cpu(proc.pid, limit=60)
            spent = cpu_seconds(proc.pid) - before
            note = f"over {wall + 6:.0f} s wall" + ("" if idle else " (still busy)") + "; every record read again"
            rows.append(["after a rule file changed", f"{spent:.1f} s CPU", note])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if not ok:
        print("\n".join(line for line in log_path.read_text().splitlines() if "overflowed" not in line)[-3000:])
    return rows, ok


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

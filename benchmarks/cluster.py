"""Issue 14: ``ftpexport watch`` on several hosts sharing one PostgreSQL ledger.

Two parts, printed, not asserted:

* throughput: ``--destinations`` FTP destinations (one pyftpdlib server in a process of its own, one
  user each, ``max_connections`` 2), ``--records`` records each already in the inbox, delivered by
  one ``watch`` process on SQLite (today's setup), then by 1, 2 and 3 ``watch`` workers on one
  PostgreSQL (a database of their own each time). Per setup: the wall time from the start of the
  workers until the ledger counts every delivery, deliveries per second over that time and over the
  window from the first attempt to the last delivery (the ledger's stamps: startup left out), and
  the peak RSS of each worker (VmHWM, polled from /proc);
* takeover: two workers on PostgreSQL with ``--lease`` (default: the product's), one record whose
  upload the server holds after its first bytes (``tests/cluster_harness.py``); the worker holding it
  is killed with ``kill -9`` and the time until the other one has renamed the file into place is
  measured at the server. Median of ``--takeovers`` (5).

    python -m benchmarks.cluster                                  # 400 destinations x 2 records, 5 takeovers
    python -m benchmarks.cluster --records 1 --takeovers 3 --lease 3   # a quicker look

The machine's load average is printed before and after: other work on it skews every figure.
Needs root (PostgreSQL runs as the postgres user, ``tests/postgres.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import postgres
from cluster_harness import Cluster
from recording_servers import recording_ftp_server

from ftpexport.ledger import open_ledger

from .ftp_server import FTPServerProcess, ftp_server
from .product import Monitor, exit_on_sigterm, ftpexport, machine_note, product_env
from .report import mb, median, open_ro, parse_ts, table
from .synthetic import PASSWORD_ENV, ftp_rule, vin, write_record


@dataclass
class Setup:
    ledger: str  # "sqlite" | "postgresql"
    workers: int
    deliveries: int = 0
    wall: float = float("nan")
    window: float = float("nan")
    rss_kb: tuple[int, ...] = ()
    failed: str | None = None


def _inbox(folder: Path, clients: list[str], per_client: int, images: list[int]) -> int:
    count = 0
    for c, client in enumerate(clients):
        for k in range(1, per_client + 1):
            count += 1
            write_record(folder / f"{client}-{k}", record_id=f"veh-{client}-{k}", client_id=client,
                         vin_=vin(c * 100 + k), images=images, seed=count)  # fmt: skip
    return count


def _rules(folder: Path, clients: list[str], ftp: FTPServerProcess, run: str) -> Path:
    folder.mkdir(parents=True)
    for client in clients:
        (folder / f"{client}.yaml").write_text(ftp_rule(client, client, ftp.port, f"{run}/incoming"))
    return folder


def _delivered(state: str) -> int:
    """Deliveries delivered so far (a SQLite file read-only; PostgreSQL through the ledger)."""
    if state.startswith("postgresql://"):
        with open_ledger(state) as ledger:
            return sum(route["delivered"] for route in ledger.routes())
    if not Path(state).exists():
        return 0
    db = open_ro(Path(state))
    try:
        return db.execute("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'").fetchone()[0]
    except Exception:  # the schema not created yet
        return 0
    finally:
        db.close()


def _window(state: str) -> float:
    """Seconds from the first attempt's start to the last delivery, by the ledger's stamps."""
    with open_ledger(state) as ledger:
        started = [parse_ts(a["started_at"]) for a in ledger.history()]
        delivered = [parse_ts(d.delivered_at) for d in ledger.delivered() if d.delivered_at]
    return max(delivered) - min(started) if started and delivered else float("nan")


def throughput(setup: Setup, expected: int, *, inbox: Path, rules: Path, state: str, env: dict[str, str],
               port: int, timeout: float) -> Setup:  # fmt: skip
    argv = ftpexport("watch", inbox, "--rules", rules, "--state", state, "--settle", "0.2", "--rescan", "5")
    logs = [open(rules.parent / f"worker-{n}.log", "wb") for n in range(setup.workers)]  # noqa: SIM115
    started = time.monotonic()
    workers = [subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    monitors = [Monitor(w.pid, [port], poll=0.2) for w in workers]
    for monitor in monitors:
        monitor.start()
    try:
        while (done := _delivered(state)) < expected:
            if time.monotonic() - started > timeout or any(w.poll() is not None for w in workers):
                setup.failed = f"{done} of {expected} delivered; logs in {rules.parent}"
                break
            time.sleep(0.5)
        setup.wall = time.monotonic() - started
        setup.deliveries = done
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        for monitor in monitors:
            monitor.stop()
        for log in logs:
            log.close()
    setup.rss_kb = tuple(m.max_rss_kb for m in monitors)
    if setup.failed is None:
        setup.window = _window(state)
    return setup


def takeover(args: argparse.Namespace, work: Path, pg: postgres.PostgresServer) -> list[float]:
    """Seconds from ``kill -9`` of the worker holding an upload to the file renamed into place by another."""
    seconds = []
    with recording_ftp_server(["dms"], parent=work) as ftp:
        env = product_env(**{PASSWORD_ENV: ftp.password, "PGPASSWORD": pg.password})
        for n in range(1, args.takeovers + 1):
            case = work / f"takeover-{n}"
            number = 900_000 + n
            write_record(case / "inbox" / f"veh-t{n}", record_id=f"veh-t{n}", client_id="dms", vin_=vin(number),
                         images=[400_000])  # fmt: skip
            (case / "rules").mkdir()
            (case / "rules" / "dms.yaml").write_text(ftp_rule("dms", "dms", ftp.port, f"takeover-{n}"))
            held = ftp.block_store(vin(number))
            with Cluster(case / "inbox", case / "rules", pg.new_database(), lease=args.lease, env=env) as cluster:
                cluster.start(2)
                held.wait(timeout=120)
                killed_at = cluster.kill(cluster.owner(held.port, ftp.port))
                target = f"dms/takeover-{n}/{vin(number)}.zip"
                deadline = killed_at + args.lease * 3 + 60
                while not (renamed := [e for e in ftp.events("renamed") if f"dms/{e.path}" == target]):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"takeover {n}: not delivered {deadline - killed_at:.0f} s after the kill")
                    time.sleep(0.05)
                seconds.append(renamed[0].at - killed_at)
                print(f"takeover {n}: {seconds[-1]:.1f} s", flush=True)
                cluster.stop()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--destinations", type=int, default=400, help="FTP destinations, one client each (400)")
    parser.add_argument("--records", type=int, default=2, help="records per destination (2)")
    parser.add_argument("--images", type=int, default=2, help="images per record (2)")
    parser.add_argument("--image-kb", type=int, default=100, help="KB per image (100)")
    parser.add_argument("--workers", default="1,2,3", help="worker counts on PostgreSQL (1,2,3)")
    parser.add_argument("--takeovers", type=int, default=5, help="kill -9 rounds (5; 0: skip)")
    parser.add_argument("--lease", type=float, default=None, help="--lease of the takeover workers (the product's)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one setup may take (900)")
    args = parser.parse_args()
    if args.lease is None:
        from ftpexport.ledger import DEFAULT_LEASE

        args.lease = DEFAULT_LEASE
    exit_on_sigterm()
    # the takeover's FTP server runs in this process: pyftpdlib logs every command unless logging is set up
    logging.basicConfig(level=logging.WARNING)
    if not postgres.available():
        print("PostgreSQL is not installed (apt-get install postgresql)", file=sys.stderr)
        return 1
    print(machine_note(), flush=True)
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="ftpexport-bench-cluster-", dir=shm))
    work.chmod(0o755)
    clients = [f"c{n:03d}" for n in range(args.destinations)]
    setups = [Setup("sqlite", 1), *(Setup("postgresql", int(n)) for n in args.workers.split(","))]
    try:
        expected = _inbox(work / "inbox", clients, args.records, [args.image_kb * 1024] * args.images)
        with ftp_server(work / "ftp", clients) as ftp, postgres.postgresql_server(work) as pg:
            os.environ["PGPASSWORD"] = pg.password  # this process reads the ledger too
            env = product_env(**{PASSWORD_ENV: ftp.password, "PGPASSWORD": pg.password})
            for n, setup in enumerate(setups):
                run = f"run-{n}-{setup.ledger}-{setup.workers}"
                rules = _rules(work / run / "rules", clients, ftp, run)
                state = pg.new_database() if setup.ledger == "postgresql" else str(work / run / "ledger.sqlite3")
                print(f"{setup.ledger}, {setup.workers} worker(s): {expected} deliveries ...", flush=True)
                throughput(setup, expected, inbox=work / "inbox", rules=rules, state=state, env=env,
                           port=ftp.port, timeout=args.timeout)  # fmt: skip
            takeovers = takeover(args, work, pg) if args.takeovers else []
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nthroughput: {args.destinations} FTP destinations (max_connections 2), {args.records} record(s) each"
          f" of {args.images} x {args.image_kb} KB, ftpexport watch --jobs 16 per worker")  # fmt: skip
    rows = [
        [s.ledger, s.workers, s.deliveries, f"{s.wall:.1f}", f"{s.deliveries / s.wall:.1f}",
         f"{s.deliveries / s.window:.1f}", " ".join(mb(kb) for kb in s.rss_kb), s.failed or "ok"]
        for s in setups
    ]  # fmt: skip
    print(table(rows, ["ledger", "workers", "deliveries", "wall s", "per s (wall)", "per s (window)",
                       "peak RSS per worker", "result"]))  # fmt: skip
    if takeovers:
        print(f"\ntakeover after kill -9 (lease {args.lease:g} s), {len(takeovers)} rounds: median"
              f" {median(takeovers):.1f} s, min {min(takeovers):.1f} s, max {max(takeovers):.1f} s")  # fmt: skip
    print(machine_note())
    return 1 if any(s.failed for s in setups) else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Watch latency: from ``vehicle.json`` written to the record delivered, in ``ftpexport watch``.

Issue 6, point 4. Starts ``ftpexport watch`` on an empty inbox with one FTP (or SFTP)
destination on loopback, warms it up with one record, then writes ``--records`` records one
after the other as a producer does (the images first, then ``vehicle.json`` under a temporary
name renamed into place) and waits for each to be delivered before the next, with a random gap
of 0-``--gap`` s so that writes fall at every phase of the watcher's loop. The latency is the
ledger's ``delivered_at`` minus the moment of the rename (same clock); it is split into
"until the attempt starts" (event, settle, load and hash, queue) and "the attempt" (upload).
Repeated for each ``--settle`` value (the default of ``watch`` is 1.0 s).

    python -m benchmarks.watch_latency                       # 100 records, settle 1.0 and 0.2
    python -m benchmarks.watch_latency --records 20 --settle 0.2,0.05

Exit status 1 when a record is not delivered within ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .ftp_server import ftp_server
from .product import exit_on_sigterm, ftpexport, machine_note, product_env, terminate
from .report import open_ro, parse_ts, percentile, table, verdict
from .synthetic import PASSWORD_ENV, SFTP_PASSWORD_ENV, ftp_rule, sftp_rule, vin, write_record

P50_TARGET = 0.5


@contextlib.contextmanager
def _server(scheme: str, work: Path) -> Iterator[tuple[str, dict[str, str], int]]:
    """(rule file text for client w01, environment, control port)."""
    if scheme == "ftp":
        with ftp_server(work / "ftp-root", ["w01"]) as ftp:
            yield ftp_rule("w01", "w01", ftp.port), {PASSWORD_ENV: ftp.password}, ftp.port
    else:
        from servers import openssh_server

        with openssh_server() as sftp:
            yield sftp_rule("w01", sftp.url("w01"), sftp.host_key), {SFTP_PASSWORD_ENV: sftp.password}, sftp.port


def _wait_delivered(db_path: Path, record_id: str, timeout: float) -> tuple[str, str] | None:
    """(delivered_at, attempt started_at) of the record once the ledger says delivered."""
    deadline = time.monotonic() + timeout
    db = None
    try:
        while time.monotonic() < deadline:
            if db is None and db_path.exists():
                with contextlib.suppress(Exception):
                    db = open_ro(db_path)
            if db is not None:
                with contextlib.suppress(Exception):
                    row = db.execute(
                        "SELECT d.delivered_at, MAX(a.started_at) FROM deliveries d JOIN attempts a"
                        " ON a.delivery_id = d.id WHERE d.record_id = ? AND d.status = 'delivered'"
                        " GROUP BY d.id",
                        (record_id,),
                    ).fetchone()
                    if row and row[0]:
                        return row[0], row[1]
            time.sleep(0.005)
        return None
    finally:
        if db is not None:
            db.close()


def measure(args: argparse.Namespace, settle: float, work: Path, rule: str, env: dict[str, str]) -> dict[str, Any]:
    case = work / f"settle-{settle:g}"
    inbox = case / "inbox"
    inbox.mkdir(parents=True)
    rules = case / "rules"
    rules.mkdir()
    (rules / "w01.yaml").write_text(rule)
    state = case / "ledger.sqlite3"
    log = open(case / "watch.log", "wb")  # noqa: SIM115
    argv = ftpexport("watch", inbox, "--rules", rules, "--state", state, "--settle", settle)
    proc = subprocess.Popen(argv, env=product_env(**env), stdout=log, stderr=subprocess.STDOUT)
    images = [args.image_kb * 1024] * args.images
    rng = random.Random(settle)
    latencies, until_attempt, attempt = [], [], []
    failed = None
    try:
        write_record(inbox / "warm-0", record_id="warm-0", client_id="w01", vin_=vin(1), images=images)
        if _wait_delivered(state, "warm-0", args.timeout) is None:
            failed = "the warm-up record was not delivered"
        for i in range(1, args.records + 1 if failed is None else 0):
            time.sleep(rng.uniform(0, args.gap))
            record_id = f"rec-{i:04d}"
            written = write_record(inbox / record_id, record_id=record_id, client_id="w01", vin_=vin(1000 + i),
                                   images=images, seed=i)  # fmt: skip
            seen = _wait_delivered(state, record_id, args.timeout)
            if seen is None:
                failed = f"{record_id} not delivered within {args.timeout:g} s"
                break
            delivered_at, started_at = seen
            latencies.append(parse_ts(delivered_at) - written)
            until_attempt.append(parse_ts(started_at) - written)
            attempt.append(parse_ts(delivered_at) - parse_ts(started_at))
    finally:
        terminate(proc, 30)
        log.close()
    if failed:
        print(f"FAILURE (settle {settle:g}): {failed}; log: {(case / 'watch.log').read_text()[-2000:]}")
    return {"settle": settle, "lat": latencies, "until": until_attempt, "attempt": attempt, "failed": failed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100, help="records measured per settle value (default 100)")
    parser.add_argument("--settle", default="1.0,0.2", help="comma-separated --settle values (default 1.0,0.2)")
    parser.add_argument("--scheme", choices=["ftp", "sftp"], default="ftp", help="destination (default ftp)")
    parser.add_argument("--images", type=int, default=4, help="images per record (default 4)")
    parser.add_argument("--image-kb", type=int, default=200, help="KB per image (default 200)")
    parser.add_argument("--gap", type=float, default=0.3, help="random pause 0..GAP s before each record (default 0.3)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for one record (default 60)")
    args = parser.parse_args()
    exit_on_sigterm()
    print(machine_note())
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="ftpexport-bench-watch-", dir=shm))
    results = []
    try:
        with _server(args.scheme, work) as (rule, env, _port):
            for value in args.settle.split(","):
                print(f"settle {float(value):g} s: {args.records} records ...", flush=True)
                results.append(measure(args, float(value), work, rule, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for r in results:
        lat = r["lat"]
        rows.append([
            f"{r['settle']:g}", len(lat),
            f"{percentile(lat, 50):.3f}", f"{percentile(lat, 95):.3f}", f"{max(lat, default=float('nan')):.3f}",
            f"{percentile(r['until'], 50):.3f}", f"{percentile(r['attempt'], 50):.3f}",
            f"p50 < {P50_TARGET:g} s: {verdict(percentile(lat, 50) < P50_TARGET)}" if lat else "no data",
        ])  # fmt: skip
    print(f"\nwatch latency, vehicle.json renamed into place -> delivered ({args.scheme}, "
          f"{args.images} x {args.image_kb} KB per record), seconds")  # fmt: skip
    print(table(rows, ["--settle", "n", "p50", "p95", "max", "p50 until attempt", "p50 attempt", "target"]))
    return 1 if any(r["failed"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())

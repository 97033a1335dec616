"""Issue 14: what a claim costs on a shared PostgreSQL ledger with a large backlog.

A PostgreSQL started like the tests' one (``tests/postgres.py``: a temporary cluster on 127.0.0.1,
fsync off) gets the ledger's schema (``open_ledger``) and a backlog written straight into its
tables: ``--pending`` pending deliveries across ``--destinations`` destinations, ``--paused`` of
those paused by the breaker, ``--held`` held by another live host and ``--backoff`` waiting for
their next try. Timed, through ``PostgresLedger`` and its ``PostgresCoordination`` (one process,
one thread, over the pool):

- ``claim`` of a runnable delivery (pending, not held, due, destination not paused), then its
  ``release`` (not timed), as a worker does around an attempt;
- ``claim`` refused: a delivery of a paused destination, and one held by the other host;
- ``pending_record_paths`` (the takeover scan of every housekeeping tick), which reads the backlog.

Printed: p50 / p99 / max in milliseconds (target: the claim's p99 under 20 ms) and the load average.

    python -m benchmarks.claim                      # 100,000 pending, 5,000 destinations, 1,000 paused
    python -m benchmarks.claim --pending 20000 --claims 300
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
from postgres import postgresql_server

from ftpexport.ledger import open_ledger
from ftpexport.ledger.postgres import PostgresLedger

from .product import exit_on_sigterm, machine_note
from .report import median, table


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _timed(runs: int, operation: Callable[[int], Any]) -> list[float]:
    timings = []
    for n in range(runs):
        started = time.perf_counter()
        operation(n)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def _backlog(url: str, args: argparse.Namespace, other: str) -> None:
    """The backlog, written in a few statements (the ledger's own calls would take minutes)."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO deliveries (record_id, content_hash, client_id, destination, record_path, status,"
            " created_at, updated_at) SELECT 'veh-' || n, 'h', 'client-' || (n %% %(d)s / 10),"
            " 'dest-' || (n %% %(d)s), '/inbox/veh-' || n, 'pending', now()::text, now()::text"
            " FROM generate_series(1, %(n)s) AS n",
            {"n": args.pending, "d": args.destinations},
        )
        db.execute("INSERT INTO hosts (name, hostname, pid, lease_until) VALUES (%s, 'other', 1, now() + interval"
                   " '1 day')", (other,))  # fmt: skip
        db.execute(
            "INSERT INTO destinations (destination, trips, paused_until, last_error) SELECT 'dest-' || n, 1,"
            " now() + interval '1 day', 'refused' FROM generate_series(0, %s - 1) AS n",
            (args.paused,),
        )
        # held by the other host, and waiting for a backoff: among the runnable destinations' deliveries
        db.execute(
            "INSERT INTO claims (delivery_id, holder, claimed_at) SELECT id, %s, now() FROM deliveries"
            " WHERE id %% %s >= %s ORDER BY random() LIMIT %s",
            (other, args.destinations, args.paused, args.held),
        )
        db.execute(
            "INSERT INTO claims (delivery_id, not_before) SELECT id, now() + interval '1 hour' FROM deliveries"
            " WHERE id %% %s >= %s AND id NOT IN (SELECT delivery_id FROM claims) ORDER BY random() LIMIT %s",
            (args.destinations, args.paused, args.backoff),
        )
        db.execute("VACUUM ANALYZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--destinations", type=int, default=5_000)
    parser.add_argument("--paused", type=int, default=1_000)
    parser.add_argument("--held", type=int, default=2_000, help="deliveries held by another live host")
    parser.add_argument("--backoff", type=int, default=2_000, help="deliveries waiting for their next try")
    parser.add_argument("--claims", type=int, default=1_000)
    parser.add_argument("--scans", type=int, default=20, help="pending_record_paths calls timed")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    print(machine_note())
    print(f"{args.pending} pending deliveries, {args.destinations} destinations ({args.paused} paused),"
          f" {args.held} held by another host, {args.backoff} in a backoff")  # fmt: skip
    with postgresql_server() as pg:
        url = pg.url(pg.new_database().rsplit("/", 1)[1], password=True)
        open_ledger(url).close()  # the schema
        started = time.perf_counter()
        _backlog(url, args, other="other-host:1:000000")
        print(f"backlog built in {time.perf_counter() - started:.1f} s")
        with psycopg.connect(url) as db:
            rows = db.execute(
                "SELECT d.id, d.destination, c.holder IS NOT NULL AS held FROM deliveries AS d"
                " LEFT JOIN claims AS c ON c.delivery_id = d.id WHERE d.id %% %s >= %s AND c.not_before IS NULL",
                (args.destinations, args.paused),
            ).fetchall()
            paused = db.execute("SELECT id, destination FROM deliveries WHERE id %% %s < %s",
                                (args.destinations, args.paused)).fetchall()  # fmt: skip
        rng = random.Random(14)
        runnable = rng.sample([(i, d) for i, d, held in rows if not held], args.claims)
        held = rng.sample([(i, d) for i, d, h in rows if h], min(args.claims, args.held))
        paused_sample = rng.sample(paused, args.claims)
        with PostgresLedger(url, 20.0, location="benchmark") as ledger:
            host = ledger.coordination
            host.register()

            timings = []
            for delivery_id, destination in runnable:  # its release after each claim, not timed
                started = time.perf_counter()
                granted = host.claim(delivery_id, destination)
                timings.append((time.perf_counter() - started) * 1000)
                assert granted.ok, granted
                host.release(delivery_id)
            results = [("claim, runnable (granted)", timings)]
            results.append(("claim, destination paused (refused)",
                            _timed(len(paused_sample), lambda n: host.claim(*paused_sample[n]))))  # fmt: skip
            results.append(("claim, held by another host (refused)",
                            _timed(len(held), lambda n: host.claim(*held[n]))))  # fmt: skip
            found: list[int] = []
            results.append(("pending_record_paths", _timed(args.scans, lambda n: found.append(len(
                ledger.pending_record_paths())))))  # fmt: skip
            host.leave()
    print(table([(what, len(t), f"{median(t):.2f}", f"{_percentile(t, 0.99):.2f}", f"{max(t):.2f}")
                 for what, t in results], ["operation", "runs", "p50 ms", "p99 ms", "max ms"]))  # fmt: skip
    print(f"pending_record_paths returned {found[0]} record folders (target: claim p99 under 20 ms)")
    print(machine_note())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PGAPPNAME", "ftpexport-benchmark")
    sys.exit(main())

"""Issue 14: could Procrastinate claim our deliveries? Its own fetch, measured on our workload.

Procrastinate (3.10.0, the version on PyPI today) is not a dependency of ftpexport; this benchmark
installs nothing and needs it installed by hand (``pip install procrastinate==3.10.0``). It applies
Procrastinate's own schema to a new database of a PostgreSQL started like the tests' one
(``tests/postgres.py``) and times its own claim, ``procrastinate_fetch_job_v2`` (the function its
workers call), on the backlog of the issue: ``--jobs`` deliveries waiting across ``--destinations``
destinations, ``--paused`` of those paused. How our needs map onto its features:

- a destination's cap of N connections: Procrastinate's ``lock`` is a mutex (one job ``doing`` per
  lock). N slots become N locks per destination (``dest#0`` .. ``dest#N-1``), fixed when the job is
  deferred: a long upload holding ``dest#0`` blocks every job deferred with ``dest#0`` even while
  ``dest#1`` is free, and idle connections kept for reuse are not jobs, so they are not counted;
- a paused destination: its jobs get a future ``scheduled_at`` (there is no per-lock pause); a job
  with a lock and a future ``scheduled_at`` blocks its lock until then (the fetch refuses a job when
  an older ``todo`` job of the same lock exists) - the ``lock_mode`` said to fix it is not in 3.10.0
  (``grep -r lock_mode`` in the package finds nothing).

Each claim takes the next runnable job (``todo``, due, its lock free) and marks it ``doing``; it is
then finished (deleted), as a worker would. Printed: p50 / p99 / max of the claim, beside the load
average.

    python -m benchmarks.procrastinate_claim                    # 100,000 jobs, 5,000 destinations, 1,000 paused
    python -m benchmarks.procrastinate_claim --jobs 20000 --claims 200
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

from postgres import postgresql_server

from .product import exit_on_sigterm, machine_note
from .report import median

_INSERT = "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, scheduled_at, args) VALUES {}"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--destinations", type=int, default=5_000)
    parser.add_argument("--paused", type=int, default=1_000)
    parser.add_argument("--slots", type=int, default=2, help="connections per destination: locks dest#0..N-1")
    parser.add_argument("--claims", type=int, default=1_000)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    try:
        import procrastinate
        import psycopg
    except ImportError:
        print("procrastinate is not installed: pip install procrastinate==3.10.0", file=sys.stderr)
        return 1
    schema = (procrastinate.__path__[0] + "/sql/schema.sql")
    print(machine_note())
    print(f"procrastinate {procrastinate.__version__ if hasattr(procrastinate, '__version__') else '3.x'}, "
          f"{args.jobs} jobs, {args.destinations} destinations ({args.paused} paused), {args.slots} lock(s) each")
    with postgresql_server() as pg:
        url = pg.url(pg.new_database().rsplit("/", 1)[1], password=True)
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(Path(schema).read_text())
            worker = db.execute(
                "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id").fetchone()[0]  # fmt: skip
            rng = random.Random(14)
            rows = []
            for i in range(args.jobs):
                dest = rng.randrange(args.destinations)
                later = "now() + interval '1 hour'" if dest < args.paused else "NULL"
                rows.append(f"('default', 'deliver', 'dest{dest}#{i % args.slots}', {later}, '{{}}'::jsonb)")
            started = time.perf_counter()
            for chunk in range(0, len(rows), 5_000):
                db.execute(_INSERT.format(",".join(rows[chunk : chunk + 5_000])))
            db.execute("ANALYZE procrastinate_jobs")
            print(f"backlog built in {time.perf_counter() - started:.1f} s")
            timings = []
            for _ in range(args.claims):
                t0 = time.perf_counter()
                job = db.execute("SELECT id FROM procrastinate_fetch_job_v2(NULL, %s)", (worker,)).fetchone()
                timings.append((time.perf_counter() - t0) * 1000)
                if job is None or job[0] is None:
                    print("no runnable job left")
                    break
                db.execute("SELECT procrastinate_finish_job_v1(%s, 'succeeded', true)", (job[0],))
            blocked = _head_of_line(db, worker)
    print(f"claim (procrastinate_fetch_job_v2), {len(timings)} claims: p50 {median(timings):.1f} ms,"
          f" p99 {_percentile(timings, 0.99):.1f} ms, max {max(timings):.1f} ms (target: p99 under 20 ms)")
    for line in blocked:
        print(line)
    print(machine_note())
    return 0


def _head_of_line(db: Any, worker: int) -> list[str]:
    """What its lock semantics do to two situations of ours, on an empty queue: a retry in its
    backoff (a future ``scheduled_at``) and a free connection slot behind a busy one."""
    fetch = "SELECT id FROM procrastinate_fetch_job_v2(NULL, %s)"
    defer = _INSERT.format("('default', 'deliver', %s, {}, '{{}}')") + " RETURNING id"
    db.execute("DELETE FROM procrastinate_jobs")
    db.execute(defer.format("now() + interval '60 seconds'"), ("retrying",))
    fresh = db.execute(defer.format("NULL"), ("retrying",)).fetchone()[0]
    got = db.execute(fetch, (worker,)).fetchone()[0]
    lines = [f"a retry in a 60 s backoff, then a new record of the same destination (lock): fetch gives"
             f" {'the new record' if got == fresh else 'nothing: the new record waits for the backoff'}"]
    db.execute("DELETE FROM procrastinate_jobs")
    db.execute(defer.format("NULL"), ("dest#0",))
    running = db.execute(fetch, (worker,)).fetchone()[0]
    queued = db.execute(defer.format("NULL"), ("dest#0",)).fetchone()[0]
    got = db.execute(fetch, (worker,)).fetchone()[0]
    lines.append(
        f"max_connections 2 as locks dest#0/dest#1: job {running} uploading on dest#0, job {queued} deferred on"
        f" dest#0, dest#1 free: fetch gives {'that job' if got == queued else 'nothing: it waits, a slot free'}"
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())

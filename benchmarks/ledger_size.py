"""Issue 14: how much room a shared (PostgreSQL) ledger takes per delivery, for the README's sizing.

Starts a PostgreSQL like the tests' one (``tests/postgres.py``) and records ``--records`` records to
``--destinations`` destinations each through the Ledger API, as the exporter records them: the
delivery opened and claimed, one attempt, one file journalled around its rename, the delivery done,
the record folder remembered. After ``VACUUM ANALYZE`` it prints the size of the ledger's tables
with their indexes and TOAST per delivery, and per table.

    python -m benchmarks.ledger_size                      # 2,000 records to 2 destinations
    python -m benchmarks.ledger_size --records 10000 --destinations 3
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from postgres import postgresql_server

from ftpexport.ledger import open_ledger

from .product import exit_on_sigterm, machine_note

_SIZES = (
    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000)
    parser.add_argument("--destinations", type=int, default=2)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    print(machine_note())
    with postgresql_server() as pg:
        database = pg.new_database().rsplit("/", 1)[1]
        url = pg.url(database, password=True)

        def sizes() -> dict[str, int]:
            rows = (line.split("|") for line in pg.psql(_SIZES, database).splitlines())
            return {name: int(size) for name, size in rows}

        with open_ledger(url) as ledger:
            host = ledger.coordination
            host.register()
            empty = sizes()
            started = time.perf_counter()
            for n in range(args.records):
                record, folder, vin = f"veh-{n:06d}", f"/srv/inbox/veh-{n:06d}", f"WVWZZZAUZLW{n:06d}"
                ids = []
                for d in range(args.destinations):
                    destination = f"client-{n % 400}/dest-{d}"
                    delivery = ledger.open_delivery(record_id=record, content_hash=uuid.uuid4().hex,
                                                    client_id=f"client-{n % 400}", destination=destination,
                                                    record_path=folder, vin=vin, user_id="u-42")  # fmt: skip
                    assert host.claim(delivery.id, destination).ok
                    attempt = ledger.start_attempt(delivery.id, uuid.uuid4().hex[:16])
                    remote = f"incoming/2026-11-20/{vin}.zip"
                    ledger.mark_files(delivery.id, {remote: "renaming"})
                    ledger.mark_files(delivery.id, {remote: "published"})
                    ledger.succeed(delivery.id, attempt, [remote], 1_500_000)
                    ids.append(delivery.id)
                ledger.mark_seen(folder, uuid.uuid4().hex, "rules", ids)
            elapsed = time.perf_counter() - started
            host.leave()
        pg.psql("VACUUM ANALYZE", database)
        full = sizes()
    deliveries = args.records * args.destinations
    grown = {name: size - empty.get(name, 0) for name, size in full.items()}
    total = sum(grown.values())
    print(f"{deliveries} deliveries ({args.records} records x {args.destinations} destinations) recorded in"
          f" {elapsed:.1f} s by one process")  # fmt: skip
    print(f"ledger: {total / deliveries:,.0f} bytes per delivery (tables, indexes, TOAST), so about"
          f" {total / deliveries / 1000:.1f} GB per million deliveries")  # fmt: skip
    for name, size in sorted(grown.items(), key=lambda item: -item[1]):
        if size:
            print(f"  {name:<20} {size / deliveries:8,.0f} bytes per delivery")
    print(machine_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())

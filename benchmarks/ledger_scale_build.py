"""The ledger that ``benchmarks.ledger_scale`` measures: the product's schema (``open_ledger``) filled with
direct SQL inserts: deliveries over a year to a number of destinations (pending, failed, superseded,
delivered), their attempts and the files journal."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .product import ROOT


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

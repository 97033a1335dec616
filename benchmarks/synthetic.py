"""Synthetic records (vehicles with images of random bytes) and the rule files of many clients, for the
scale benchmarks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from daemons import HOST

VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # no I, O, Q
PASSWORD_ENV = "BENCH_FTP_PASSWORD"
SFTP_PASSWORD_ENV = "BENCH_SFTP_PASSWORD"
_BLOCK = os.urandom(1 << 20)


def vin(n: int, prefix: str = "WVW") -> str:
    """A valid, distinct 17-character VIN for ``n``."""
    body = []
    for _ in range(17 - len(prefix)):
        n, digit = divmod(n, len(VIN_ALPHABET))
        body.append(VIN_ALPHABET[digit])
    return prefix + "".join(reversed(body))


def image_bytes(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that do not compress: a random block, rotated by ``seed`` (cheap to make)."""
    start = (seed * 7919) % len(_BLOCK)
    block = _BLOCK[start:] + _BLOCK[:start]
    return (block * (size // len(block) + 1))[:size]


def write_record(
    folder: Path,
    *,
    record_id: str,
    client_id: str,
    vin_: str,
    images: Sequence[int],
    user_id: str = "u-1",
    seed: int = 0,
    fsync: bool = False,
) -> float:
    """Write a record as a producer does: the images first, then ``vehicle.json`` atomically
    (a temporary name in the folder, then a rename). Returns ``time.time()`` right after the rename."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for n, size in enumerate(images, start=1):
        name = f"{n:02d}.jpg"
        with open(folder / name, "wb") as out:
            if size > (64 << 20):
                for offset in range(0, size, 16 << 20):
                    out.write(image_bytes(min(16 << 20, size - offset), seed + n + offset))
            else:
                out.write(image_bytes(size, seed * 131 + n))
            if fsync:
                os.fsync(out.fileno())
        names.append(name)
    data = {
        "id": record_id,
        "event": "vehicle.processed",
        "client_id": client_id,
        "user": {"id": user_id, "name": "Bench User"},
        "vin": vin_,
        "stock_number": f"S{seed}",
        "make": "Volkswagen",
        "model": "Golf",
        "year": 2021,
        "processed_at": "2026-11-20T14:03:00+01:00",
        "images": names,
    }
    tmp = folder / ".vehicle.json.tmp"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, folder / "vehicle.json")
    return time.time()


def ftp_rule(client_id: str, username: str, port: int, path: str = "incoming", *, max_connections: int = 2) -> str:
    return f"""client_id: {client_id}
destinations:
  - name: dms
    url: ftp://{username}@{HOST}:{port}/{path}
    password: ${{{PASSWORD_ENV}}}
    allow_plain_ftp: true
    max_connections: {max_connections}
package:
  format: zip
"""


def sftp_rule(client_id: str, url: str, host_key: str, *, max_connections: int = 2) -> str:
    return f"""client_id: {client_id}
destinations:
  - name: dms
    url: {url}
    password: ${{{SFTP_PASSWORD_ENV}}}
    host_key: "{host_key}"
    max_connections: {max_connections}
package:
  format: zip
"""

"""What the product contract costs before a byte is sent: the floor under every ``benchmarks.export`` row.

SPEC.md asks for a content hash over ``vehicle.json`` and every image's bytes (a record is new,
updated or already delivered by it), and a zip needs every image's CRC-32. Those, the read under
them, and the start-up of a ``run`` are work no pipeline of ftpexport's design can skip. This script
measures them on the payload ``benchmarks.export`` sends (same records, same sizes) and prints:

- CPU seconds per GB of the contract's work alone: reading, + sha256, + CRC-32 (in-process, one
  thread, medians of ``--runs``), and of ftpexport's own record reading beside it (``load_record``,
  which also checks each file and validates ``vehicle.json``);
- the start-up of ``ftpexport run`` on an empty inbox, of the interpreter alone, and of the bare
  client of ``benchmarks.export`` (its imports, with ftplib or paramiko): new processes, wall and CPU;
- the floor of a run of this payload: CPU per GB (contract + start-up), with the figure the best
  tool of a row must spend for issue 16's "at most 1.5x the best tool's CPU" to be reachable at all;
  and the fastest a run can end while one thread reads the records in turn (start-up + the
  contract's reading), as MB/s, to set beside the bare client's and the tools' MB/s.

No servers, no network.

    python -m benchmarks.floor
    python -m benchmarks.floor --records 40 --runs 9
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from .common import REPO, Inbox, log, make_inbox, work_root
from .export_runs import ftpexport_run, run_timed
from .product import machine_note
from .report import table
from .synthetic import PASSWORD_ENV, ftp_rule

#: the start-ups measured: ftpexport's (None: ``ftpexport run`` on an empty inbox), the interpreter's, and the
#: bare client's of ``benchmarks.export`` (its imports; paramiko's as a script imports it)
STARTS: dict[str, list[str] | None] = {
    "ftpexport run on an empty inbox": None,
    "python -c pass": [sys.executable, "-c", "pass"],
    "the bare client, ftplib": [sys.executable, "-c", "import argparse, ftplib, queue, ssl, threading"],
    "the bare client, paramiko": [sys.executable, "-c", "import argparse, ftplib, queue, ssl, threading, paramiko"],
}
LOOSE = "read + sha256 (the content hash): loose files"
ZIP = "read + sha256 + CRC-32: zip"
#: the block ftpexport reads records in (``record._HASH_CHUNK``)
BLOCK = 1024 * 1024


def _files(inbox: Inbox) -> list[Path]:
    """Every file of every record, vehicle.json first, as ftpexport reads them."""
    paths = []
    for folder in inbox.folders:
        paths.append(folder / "vehicle.json")
        paths += sorted(folder.glob("*.jpg"))
    return paths


def _read(paths: list[Path], sha256: bool, crc: bool) -> None:
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    for path in paths:
        digest = hashlib.sha256() if sha256 else None
        value = 0
        with path.open("rb", buffering=0) as stream:
            while n := stream.readinto(buffer):
                chunk = view[:n]
                if digest is not None:
                    digest.update(chunk)
                if crc:
                    value = zlib.crc32(chunk, value)


def _load_records(inbox: Inbox, zipped: bool) -> None:
    from ftpexport.record import load_record

    for folder in inbox.folders:
        load_record(folder, crc=(lambda _data: True) if zipped else None)


def _timed(work: Callable[[], None], runs: int) -> tuple[float, float]:
    """Medians of (wall, CPU) seconds of ``work`` in this process."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _startup(work: Path, runs: int) -> dict[str, tuple[float, float]]:
    """Medians of (wall, CPU) seconds of each start-up of ``STARTS``, each run a new process."""
    rules = work / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    # an FTP destination that is never dialled: the inbox is empty
    (rules / "bench.yaml").write_text(ftp_rule("bench", "bench", 9))
    (work / "empty").mkdir(exist_ok=True)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           PASSWORD_ENV: "not-used"}  # fmt: skip
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in STARTS}
    for n in range(runs):
        scratch = work / f"startup-{n}"
        scratch.mkdir()
        for name, argv in STARTS.items():
            argv = ftpexport_run(work / "empty", rules, scratch) if argv is None else argv
            wall, cpu, code, _ = run_timed(argv, env, scratch / f"{len(times[name])}-{name.split()[0]}.log")
            if code != 0:
                raise SystemExit(f"{name} exited {code}: see the logs in {scratch}")
            times[name].append((wall, cpu))
    return {name: (statistics.median(w for w, _ in pairs), statistics.median(c for _, c in pairs))
            for name, pairs in times.items()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40, help="vehicles, as benchmarks.export's --records")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="where the inbox is written (default: tmpfs when there is one)")
    args = parser.parse_args(argv)
    root = work_root(args.workdir)
    work = root / "floor"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(machine_note())
    log(f"writing the inbox ({args.records} vehicles) ...")
    inbox = make_inbox(root / f"inbox-{args.records}", args.records)
    paths = _files(inbox)
    gb = inbox.bytes / 1e9
    size = f"{inbox.bytes / 1e6:.1f} MB"
    print(f"payload: {args.records} records, {len(paths)} files, {size}, read in {BLOCK // 1024} KiB blocks")
    _read(paths, True, True)  # a first pass, not measured: the page cache and the allocator warm

    measured = {
        "read": _timed(lambda: _read(paths, False, False), args.runs),
        LOOSE: _timed(lambda: _read(paths, True, False), args.runs),
        ZIP: _timed(lambda: _read(paths, True, True), args.runs),
        "ftpexport's load_record, loose files": _timed(lambda: _load_records(inbox, False), args.runs),
        "ftpexport's load_record, zip": _timed(lambda: _load_records(inbox, True), args.runs),
    }
    rows = [(name, f"{cpu / gb:.2f}", f"{cpu:.3f}", f"{wall:.3f}") for name, (wall, cpu) in measured.items()]
    print(f"\nthe records' reading, one thread (medians of {args.runs}):")
    print(table(rows, ["work", "CPU s/GB", "CPU s", "wall s"]))

    startup = _startup(work, args.runs)
    start_wall, start_cpu = startup["ftpexport run on an empty inbox"]
    rows = [(name, f"{wall:.3f}", f"{cpu:.3f}", f"{cpu / gb:.2f}") for name, (wall, cpu) in startup.items()]
    print(f"\nstart-up, new processes (medians of {args.runs}):")
    print(table(rows, ["process", "wall s", "CPU s", "CPU s per GB of this payload"]))

    print(f"\nthe floor of one `ftpexport run` of this payload ({inbox.bytes / 1e6:.1f} MB):")
    floors = []
    for layout, key in (("zip", ZIP), ("files", LOOSE)):
        wall, cpu = measured[key]
        per_gb = (cpu + start_cpu) / gb
        fastest = start_wall + wall
        floors.append((layout, f"{cpu / gb:.2f}", f"{per_gb:.2f}", f"{per_gb / 1.5:.2f}", f"{fastest:.3f}",
                       f"{inbox.bytes / 1e6 / fastest:.0f}"))  # fmt: skip
    print(table(floors, ["layout", "CPU s/GB, contract", "+ start-up", "best tool must spend >=",
                         "fastest run s", "MB/s at most"]))  # fmt: skip
    print("(CPU target: ftpexport at most 1.5x the best tool's CPU per GB, so a row's target is out of reach when its"
          " best tool spends less than 'best tool must spend'; 'MB/s at most': start-up, then one thread reading and"
          " hashing the records in turn, every upload free; set it beside the bare client's and the tools' MB/s)")
    print(machine_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())

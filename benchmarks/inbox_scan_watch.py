"""``ftpexport watch`` as a subprocess (``benchmarks.inbox_scan``), with a real FTP destination: the
latency of a record written at start-up, then in steady state, and the CPU spent after a rule file
changes (read from /proc), with watchdog's inotify overflows counted in its log."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from .product import cpu_seconds, ftpexport, terminate
from .report import open_ro, parse_ts
from .synthetic import vin, write_record


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
            terminate(proc, 60)
    if not ok:
        print("\n".join(line for line in log_path.read_text().splitlines() if "overflowed" not in line)[-3000:])
    return rows, ok

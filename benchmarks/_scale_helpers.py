"""Helpers shared by the scale benchmarks (scale, watch_latency, ledger_scale, inbox_scan).

Synthetic records, rule files, a multi-user pyftpdlib server in a process of its own, the
product run as a subprocess, and a monitor that polls that subprocess's memory and open TCP
connections from /proc (Linux). Nothing here changes the product: it is driven from outside.

``python -m benchmarks._scale_helpers ftp-server CONFIG.json`` is the FTP server's entry point.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from daemons import wait_for_greeting

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # no I, O, Q
PASSWORD_ENV = "BENCH_FTP_PASSWORD"
SFTP_PASSWORD_ENV = "BENCH_SFTP_PASSWORD"


# --- records


def vin(n: int, prefix: str = "WVW") -> str:
    """A valid, distinct 17-character VIN for ``n``."""
    body = []
    for _ in range(17 - len(prefix)):
        n, digit = divmod(n, len(VIN_ALPHABET))
        body.append(VIN_ALPHABET[digit])
    return prefix + "".join(reversed(body))


_BLOCK = os.urandom(1 << 20)


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


# --- rule files


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


# --- the product as a subprocess


def product_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def ftpexport(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "ftpexport", *(str(a) for a in args)]


@dataclass
class ProcessResult:
    returncode: int
    wall: float
    #: peak RSS of the program: the highest VmHWM polled from /proc (wait4's ru_maxrss is not used:
    #: on Linux it also counts the RSS of the parent at fork time, i.e. of this benchmark)
    peak_rss_kb: int
    #: user + system CPU seconds of the process (wait4)
    cpu: float
    stdout: str
    stderr: str
    monitor: Monitor | None = None
    #: CPU seconds the watched server processes used meanwhile
    server_cpu: float = 0.0
    #: time.time() when the process was started
    started_at: float = 0.0


def run_measured(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    control_ports: Sequence[int] = (),
    poll: float = 0.05,
    timeout: float | None = None,
    server_pids: Sequence[int] = (),
) -> ProcessResult:
    """Run ``argv`` to its end: its peak RSS (VmHWM), CPU time, wall time, and a Monitor of its
    open connections to ``control_ports`` while it ran."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server_before = sum(cpu_seconds(p) for p in server_pids)
        started, started_at = time.monotonic(), time.time()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err)
        monitor = Monitor(proc.pid, control_ports, poll=poll)
        monitor.start()
        deadline = None if timeout is None else started + timeout
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
        finally:
            monitor.stop()
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ProcessResult(
            proc.returncode,
            wall,
            monitor.max_rss_kb,
            usage.ru_utime + usage.ru_stime,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            monitor,
            sum(cpu_seconds(p) for p in server_pids) - server_before,
            started_at,
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process and its waited-for children (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(v) for v in fields[11:15]) / ticks


# --- /proc polling


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def established_by_remote_port(pid: int) -> dict[int, int]:
    """``{remote port: count}`` of the ESTABLISHED TCP sockets that process ``pid`` holds."""
    inodes = _socket_inodes(pid)
    counts: dict[int, int] = {}
    if not inodes:
        return counts
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] != "01" or parts[9] not in inodes:
                        continue
                    port = int(parts[2].rsplit(":", 1)[1], 16)
                    counts[port] = counts.get(port, 0) + 1
        except OSError:
            continue
    return counts


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and Threads of ``pid`` (kB / count)."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    return values


class Monitor(threading.Thread):
    """Polls a process: max control connections (to ``control_ports``), max TCP connections, RSS."""

    def __init__(self, pid: int, control_ports: Sequence[int], poll: float = 0.05) -> None:
        super().__init__(daemon=True, name=f"monitor-{pid}")
        self.pid = pid
        self.control_ports = set(control_ports)
        self.poll = poll
        self._halt = threading.Event()
        self.max_control = 0
        self.max_tcp = 0
        self.max_rss_kb = 0
        self.max_threads = 0
        self.samples = 0
        self.control_timeline: list[tuple[float, int]] = []

    def run(self) -> None:
        started = time.monotonic()
        while not self._halt.is_set():
            counts = established_by_remote_port(self.pid)
            control = sum(n for port, n in counts.items() if port in self.control_ports)
            self.max_control = max(self.max_control, control)
            self.max_tcp = max(self.max_tcp, sum(counts.values()))
            status = proc_status(self.pid)
            self.max_rss_kb = max(self.max_rss_kb, status.get("VmHWM", 0))
            self.max_threads = max(self.max_threads, status.get("Threads", 0))
            self.samples += 1
            self.control_timeline.append((time.monotonic() - started, control))
            self._halt.wait(self.poll)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


# --- an FTP server with many users, in a process of its own


@dataclass
class FTPServerProcess:
    port: int
    password: str
    root: Path
    process: subprocess.Popen[bytes]
    users: list[str] = field(default_factory=list)

    def home(self, username: str) -> Path:
        return self.root / username


@contextlib.contextmanager
def ftp_server(root: Path, usernames: Sequence[str], *, workers: int = 1) -> Iterator[FTPServerProcess]:
    """pyftpdlib on 127.0.0.1, one home folder per user under ``root``, no connection limit."""
    password = os.urandom(12).hex()
    root.mkdir(parents=True, exist_ok=True)
    config = root.parent / f".{root.name}-ftp.json"
    port_file = root.parent / f".{root.name}-ftp.port"
    port_file.unlink(missing_ok=True)
    config.write_text(
        json.dumps(
            {
                "password": password,
                "users": [{"name": u, "home": str(root / u)} for u in usernames],
                "port_file": str(port_file),
                "workers": workers,
            }
        )
    )
    log = open(root.parent / f".{root.name}-ftp.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._scale_helpers", "ftp-server", str(config)],
        cwd=ROOT,
        env=product_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"FTP server did not start, see {log.name}")
            time.sleep(0.05)
        port = int(port_file.read_text())
        wait_for_greeting(port, b"220", alive=lambda: process.poll() is None)
        yield FTPServerProcess(port, password, root, process, list(usernames))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _serve_ftp(config_path: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(OSError, AttributeError):  # end with the benchmark, even if it is killed
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    config = json.loads(Path(config_path).read_text())
    authorizer = DummyAuthorizer()
    for user in config["users"]:
        Path(user["home"]).mkdir(parents=True, exist_ok=True)
        authorizer.add_user(user["name"], config["password"], user["home"], perm="elradfmwMT")
    handler = type(
        "BenchFTPHandler", (FTPHandler,), {"authorizer": authorizer, "banner": "bench", "auth_failed_timeout": 0.1}
    )
    server = FTPServer((HOST, 0), handler)
    server.max_cons = 0  # no limit: the benchmark counts the client's connections itself
    server.max_cons_per_ip = 0
    tmp = Path(config["port_file"] + ".tmp")
    tmp.write_text(str(server.address[1]))
    tmp.replace(config["port_file"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever(handle_exit=True, worker_processes=config.get("workers", 1))


# --- ledger reading


def open_ro(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    return db


def parse_ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


# --- py-spy


def pyspy_summary(raw: Path, top: int = 25, package: str = "ftpexport") -> str:
    """Where the time goes in a py-spy ``--format raw`` file (recorded with ``--idle``).

    Per thread kind (main, worker, other): the share of samples, then the frames of ``package``
    and the leaves (what the thread was doing at the bottom of its stack) by share of samples.
    """
    import re
    from collections import Counter

    if not raw.exists():
        return f"(no profile: {raw} missing)"
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    frame_re = re.compile(r"^(.*) \((.*?):(\d+)\)$")
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        seen = set()
        for frame in frames:
            match = frame_re.match(frame)
            name = frame
            if match:
                func, path = match.group(1), match.group(2)
                if f"/{package}/" not in path and not path.startswith(package + "/"):
                    continue
                name = f"{func} ({path.split('/' + package + '/')[-1]})"
            else:
                continue
            if name not in seen:
                inclusive[name] += n
                seen.add(name)
        leaf = frames[-1]
        match = frame_re.match(leaf)
        if match:
            leaf = f"{match.group(1)} ({Path(match.group(2)).name}:{match.group(3)})"
        leaves[leaf] += n
    if not total:
        return "(empty profile)"
    lines = [f"{total} samples over all threads (idle included); share of thread-samples:"]
    lines.append(f"  {package} frames, inclusive:")
    lines += [f"    {100 * n / total:5.1f} %  {name}" for name, n in inclusive.most_common(top)]
    lines.append("  leaves (innermost frame), all code:")
    lines += [f"    {100 * n / total:5.1f} %  {name}" for name, n in leaves.most_common(top)]
    return "\n".join(lines)


# --- printing


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells[1:]]
    return "\n".join(lines)


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def exit_on_sigterm() -> None:
    """SIGTERM ends the benchmark through its ``finally`` blocks (servers stopped, work folders removed)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def machine_note() -> str:
    """CPUs and load: other work on the machine skews every timing below."""
    load = os.getloadavg()
    return (
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
        f" (timings are skewed when the load is above the CPU count), Python {sys.version.split()[0]}"
    )


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "ftp-server":
        _serve_ftp(sys.argv[2])
    else:
        sys.exit("usage: python -m benchmarks._scale_helpers ftp-server CONFIG.json")

"""The product as the benchmarks run it: ``python -m ftpexport`` in a subprocess, its CPU time, and a
monitor that polls its memory and open TCP connections from /proc (Linux). Nothing here changes
the product: it is driven from outside.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, ``grace`` seconds to exit, then SIGKILL; returns once the process is gone."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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

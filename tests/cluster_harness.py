"""Several ``ftpexport watch`` workers on one PostgreSQL ledger (issue 14: the cluster tests and
``benchmarks/cluster.py``); the servers that count what they did are in ``recording_servers.py``.

``Cluster``: the workers, ``python -m ftpexport --log-format json watch INBOX --rules DIR --state URL
--lease S`` sharing an inbox, a rules folder and the ledger (``PGPASSWORD`` in their environment);
``owner(port, server_port)`` is the worker whose socket has that local port (Linux /proc), ``kill``
is ``kill -9``; the test reads the ledger through ``ledger`` (the product's own ``Ledger``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from polling import DEADLINE, eventually
from processes import ExporterProcess

from ftpexport.ledger import DEFAULT_LEASE, Ledger, open_ledger


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def connection_owner(local_port: int, remote_port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` holds the TCP socket from 127.0.0.1:``local_port`` to ``remote_port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)
            for row in rows:
                parts = row.split()
                local, remote = int(parts[1].rsplit(":", 1)[1], 16), int(parts[2].rsplit(":", 1)[1], 16)
                if (local, remote) == (local_port, remote_port):
                    inodes.add(parts[9])
    return next((pid for pid in pids if inodes & _socket_inodes(pid)), None)


class Cluster:
    """``ftpexport watch`` workers sharing ``inbox``, ``rules`` and the ledger at ``state`` (a URL);
    killed on exit. ``options`` go after the command's own (``--jobs``, ``--pause`` ...)."""

    def __init__(
        self,
        inbox: Path,
        rules: Path,
        state: str,
        *,
        lease: float = 3.0,
        env: dict[str, str] | None = None,
        options: Sequence[str] = (),
    ) -> None:
        self.inbox, self.rules, self.state, self.lease = inbox, rules, state, lease
        self.env = env or {}
        self.options = list(options)
        self.workers: list[ExporterProcess] = []
        self._ledger: Ledger | None = None

    def argv(self) -> list[str | Path]:
        return [
            "--log-format", "json", "watch", self.inbox, "--rules", self.rules, "--state", self.state,
            "--lease", f"{self.lease:g}", "--settle", "0.2", "--rescan", "2", "--backoff", "0.05", *self.options,
        ]  # fmt: skip

    def start(self, count: int = 1) -> list[ExporterProcess]:
        """Start ``count`` workers at once; return once each logged "watching"."""
        new = [ExporterProcess(*self.argv(), env=self.env) for _ in range(count)]
        self.workers += new
        eventually(lambda: all(w.logged("watching") or not w.alive() for w in new), f"{count} workers to start")
        for worker in new:
            assert worker.alive(), f"a worker exited at start:\n{worker.stderr[-3000:]}"
        return new

    def alive(self) -> list[ExporterProcess]:
        return [w for w in self.workers if w.alive()]

    def owner(self, local_port: int, remote_port: int) -> ExporterProcess:
        """The worker holding the connection from ``local_port`` to the server's ``remote_port``."""
        pid = connection_owner(local_port, remote_port, [w.pid for w in self.alive()])
        assert pid is not None, f"no worker holds the connection from port {local_port} to {remote_port}"
        return next(w for w in self.workers if w.pid == pid)

    def kill(self, worker: ExporterProcess) -> float:
        """``kill -9`` the worker; returns the ``time.monotonic()`` of the kill."""
        assert worker.alive(), f"the worker died before the kill:\n{worker.stderr[-3000:]}"
        killed_at = time.monotonic()
        assert worker.kill() == -signal.SIGKILL
        return killed_at

    def stop(self) -> None:
        """SIGTERM every worker alive: each must exit 0 having logged "stopped" last."""
        alive = self.alive()
        for worker in alive:
            worker.terminate()
        for worker in alive:
            assert worker.wait() == 0, worker.stderr[-3000:]
            events = worker.events()
            assert events and events[-1]["message"] == "stopped", worker.stderr[-3000:]

    def delivered_by(self) -> dict[int, int]:
        """``{pid: deliveries it logged as delivered}`` of every worker that delivered something (an
        attempt logs a line, its outcome another: counted once by correlation id)."""
        counts = {
            w.pid: len({e.get("correlation_id") for e in w.events() if e.get("result") == "delivered"})
            for w in self.workers
        }
        return {pid: n for pid, n in counts.items() if n}

    def stderr(self) -> str:
        """The end of every worker's stderr, for an assertion's message."""
        return "\n".join(f"--- worker {w.pid}:\n{w.stderr[-2500:]}" for w in self.workers)

    # --- the ledger, read from the test's side

    @property
    def ledger(self) -> Ledger:
        """The shared ledger opened by the test (closed on exit)."""
        if self._ledger is None:
            self._ledger = open_ledger(self.state, lease=DEFAULT_LEASE)
        return self._ledger

    def statuses(self) -> Counter[str]:
        return Counter(d.status for d in self.ledger.deliveries())

    def wait_delivered(self, count: int, timeout: float = DEADLINE) -> None:
        """Until ``count`` deliveries are delivered; fails with the ledger's counts and the workers'
        logs after ``timeout`` seconds or once no worker is left."""
        deadline = time.monotonic() + timeout
        while (statuses := self.statuses())["delivered"] < count:
            if time.monotonic() > deadline or not self.alive():
                lost = "every worker died" if not self.alive() else f"timed out after {timeout:g} s"
                raise AssertionError(f"{lost} waiting for {count} deliveries: {dict(statuses)}\n{self.stderr()}")
            time.sleep(0.05)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The exporter as a subprocess: ``ExporterProcess`` runs ``python -m ftpexport ARGS`` with its output
read by threads; ``start_watch`` starts the daemon and returns once it watches.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from paths import ROOT
from polling import DEADLINE, eventually


class ExporterProcess:
    """``python -m ftpexport ARGS`` with stdout and stderr read by threads; killed and waited on exit."""

    def __init__(self, *args: str | Path, env: dict[str, str] | None = None) -> None:
        self.argv = [sys.executable, "-m", "ftpexport", *[str(a) for a in args]]
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=ROOT,
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout_lines), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr_lines), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float = DEADLINE) -> int:
        """The exit code; fails the test if the process is still running after ``timeout`` s."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.argv[3:]} still running after {timeout:g} s\n{self.stderr}")
        self._join()
        return code

    def kill(self) -> int:
        """SIGKILL (if still running) and wait; returns the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        code = self.process.wait(timeout=DEADLINE)
        self._join()
        return code

    def terminate(self) -> None:
        """SIGTERM, as ``docker stop`` and systemd send it."""
        self.process.send_signal(signal.SIGTERM)

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(timeout=10)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    @property
    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr (``--log-format json``)."""
        found = []
        for line in list(self.stderr_lines):
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line still being read
        return found

    def logged(self, message: str, **fields: Any) -> list[dict[str, Any]]:
        """The JSON log events with this message and these field values."""
        return [
            e for e in self.events() if e.get("message") == message and all(e.get(k) == v for k, v in fields.items())
        ]

    def __enter__(self) -> ExporterProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


def start_watch(
    inbox: Path, rules: Path, state: Path, *extra: str, rescan: float = 2, env: dict[str, str] | None = None
) -> ExporterProcess:
    """Start ``ftpexport --log-format json watch`` (short settle, rescan and backoff) and return once it
    logged "watching"."""
    daemon = ExporterProcess(
        "--log-format", "json", "watch", inbox, "--rules", rules, "--state", state,
        "--settle", "0.2", "--rescan", str(rescan), "--backoff", "0.05", *extra,
        env=env,
    )  # fmt: skip
    try:
        eventually(lambda: daemon.logged("watching") or not daemon.alive(), "the daemon to start")
        assert daemon.alive(), daemon.stderr
    except BaseException:
        daemon.kill()
        raise
    return daemon

"""Shared by the crash, daemon and test-connection tests: records, the exporter as a subprocess, the ledger.

Nothing here sleeps for readiness: ``eventually`` polls a condition until a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from ftpexport.plan import make_package, plan_record
from ftpexport.record import load_record
from ftpexport.rules import load_rules, routes_for

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
#: the longest any test waits for something to happen
DEADLINE = 30.0


def eventually(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


# --- records


def vin_for(number: int) -> str:
    """A valid, unique VIN (17 characters, no I, O or Q)."""
    return f"WVWZZZAUZLW{number:06d}"


def make_record(
    parent: Path,
    name: str,
    *,
    number: int,
    sample: str = "veh-000124",
    image_sizes: dict[str, int] | None = None,
) -> Path:
    """A copy of a sample record with its own id and VIN; ``image_sizes`` replaces images by random bytes.

    vehicle.json is written last, as the platform does.
    """
    source = SAMPLES / sample
    folder = parent / name
    folder.mkdir(parents=True)
    for image in sorted(source.iterdir()):
        if image.name != "vehicle.json":
            shutil.copyfile(image, folder / image.name)
    for image_name, size in (image_sizes or {}).items():
        (folder / image_name).write_bytes(os.urandom(size))
    data = json.loads((source / "vehicle.json").read_text())
    data.update(id=name, vin=vin_for(number))
    (folder / "vehicle.json").write_text(json.dumps(data))
    return folder


def expected_files(record: Path, rules_dir: Path) -> dict[str, bytes]:
    """The files the exporter must deliver for ``record``, rebuilt locally: ``{name: bytes}``."""
    ruleset = load_rules(rules_dir)
    loaded = load_record(record)
    plan = plan_record(loaded, ruleset, routes_for(ruleset, loaded))
    with tempfile.TemporaryDirectory(prefix="ftpexport-expected-") as tmp:
        package = make_package(plan, Path(tmp))
        artifacts = [*package.files, *([package.done_marker] if package.done_marker else [])]
        files = {}
        for artifact in artifacts:
            with artifact.open() as stream:
                files[artifact.name] = stream.read()
    return files


def write_rule_file(path: Path, text: str) -> None:
    """Replace a rule file in one step, so a watching daemon never reads it half written."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def remote_files(root: Path) -> set[str]:
    """Every file under a server's root, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def part_files(root: Path) -> set[str]:
    """The temporary ``.NAME.part`` files under a server's root."""
    return {name for name in remote_files(root) if Path(name).name.endswith(".part")}


# --- the ledger, read from outside the exporting process


def _query(state: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    if not state.exists():
        return []
    db = sqlite3.connect(state, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, params).fetchall()]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # the exporter has not created its schema yet
        raise
    finally:
        db.close()


def deliveries(state: Path) -> list[dict[str, Any]]:
    """Every row of the ``deliveries`` table, by id."""
    return _query(state, "SELECT * FROM deliveries ORDER BY id")


def attempts(state: Path, delivery_id: int | None = None) -> list[dict[str, Any]]:
    """The attempts (of one delivery), by id."""
    if delivery_id is None:
        return _query(state, "SELECT * FROM attempts ORDER BY id")
    return _query(state, "SELECT * FROM attempts WHERE delivery_id = ? ORDER BY id", (delivery_id,))


def journal(state: Path, delivery_id: int) -> dict[str, str]:
    """The crash journal of one delivery: ``{remote path: renaming | published}``."""
    rows = _query(state, "SELECT remote_path, state FROM files WHERE delivery_id = ?", (delivery_id,))
    return {row["remote_path"]: row["state"] for row in rows}


def statuses(state: Path) -> Counter[str]:
    """How many deliveries have each status."""
    return Counter(row["status"] for row in deliveries(state))


# --- the exporter as a subprocess


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


# --- pyftpdlib handlers that count (and can kill on) what the server receives


class FtpSpy:
    """Handler attributes for ``servers.pyftpdlib_server`` counting STORs and successful RNTOs per path.

    Paths are the server's local paths (pyftpdlib hands its commands file system paths).
    ``kill_on_rename(name, pid)`` makes the server SIGKILL ``pid`` right after it renamed a file
    to ``name``: the rename is done on the server, the client never learns it.
    """

    def __init__(self, **extra: Any) -> None:
        self.stores: Counter[str] = Counter()
        self.renames: Counter[str] = Counter()
        self.kills: list[str] = []
        self._kill: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self.extra = extra

    def kill_on_rename(self, name: str, pid: int) -> None:
        with self._lock:
            self._kill = (name, pid)

    def attributes(self) -> dict[str, Any]:
        from pyftpdlib.handlers import FTPHandler

        spy = self

        def ftp_STOR(handler: Any, file: str, mode: str = "w") -> Any:
            with spy._lock:
                spy.stores[file] += 1
            return FTPHandler.ftp_STOR(handler, file, mode)

        def ftp_RNTO(handler: Any, path: str) -> Any:
            with spy._lock:
                kill = spy._kill if spy._kill is not None and Path(path).name == spy._kill[0] else None
            if kill is not None:
                # Kill once the file is renamed but before the client reads "250": it must not
                # have a chance to journal the rename.
                def respond(resp: str, *args: Any, **kwargs: Any) -> None:
                    if resp.startswith("250"):
                        with spy._lock:
                            spy._kill = None
                            spy.kills.append(path)
                        os.kill(kill[1], signal.SIGKILL)
                    FTPHandler.respond(handler, resp, *args, **kwargs)

                handler.respond = respond
            try:
                result = FTPHandler.ftp_RNTO(handler, path)
            finally:
                handler.__dict__.pop("respond", None)
            if result:  # (source, target) when the file was renamed
                with spy._lock:
                    spy.renames[path] += 1
            return result

        return {"ftp_STOR": ftp_STOR, "ftp_RNTO": ftp_RNTO, **self.extra}

    def stored(self, root: Path) -> Counter[str]:
        """STOR count per path relative to ``root``."""
        with self._lock:
            return Counter({str(Path(k).relative_to(root)): v for k, v in self.stores.items()})

    def renamed(self, root: Path) -> Counter[str]:
        """Successful RNTO count per target path relative to ``root``."""
        with self._lock:
            return Counter({str(Path(k).relative_to(root)): v for k, v in self.renames.items()})


def throttled_dtp(bytes_per_second: int) -> type:
    """A pyftpdlib data channel handler that receives at most ``bytes_per_second``."""
    from pyftpdlib.handlers import ThrottledDTPHandler

    return type("TestThrottledDTPHandler", (ThrottledDTPHandler,), {"read_limit": bytes_per_second})


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

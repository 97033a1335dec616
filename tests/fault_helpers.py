"""Helpers for the fault tests of the export pipeline (``tests/integration/test_faults_export.py``).

Records made from ``samples/veh-000124`` with their own id and VIN, rule files written from dicts,
pyftpdlib handler overrides that misbehave on purpose while counting what the server saw, and a
few checks of a server's disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import RunningServer

from ftpexport.plan import make_package, plan_record
from ftpexport.record import load_record
from ftpexport.rules import RuleSet, routes_for

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
TEMPLATE_RECORD = SAMPLES / "veh-000124"


def vin(n: int) -> str:
    """A valid VIN (17 characters, no I/O/Q) that differs for every ``n``."""
    return f"WVWZZZAUZLW{n:06d}"


def make_record(inbox: Path, n: int, client_id: str, *, extra_image_bytes: int = 0) -> Path:
    """A copy of ``samples/veh-000124`` as record ``veh-<n>`` of ``client_id`` with VIN ``vin(n)``.

    ``extra_image_bytes`` adds an incompressible image of that size (``99.jpg``, last in natural
    order), to make the archive as large as a test needs. ``vehicle.json`` is written last.
    """
    folder = inbox / f"veh-{n:06d}"
    folder.mkdir(parents=True)
    for image in TEMPLATE_RECORD.iterdir():
        if image.name != "vehicle.json":
            shutil.copy2(image, folder / image.name)
    if extra_image_bytes:
        (folder / "99.jpg").write_bytes(os.urandom(extra_image_bytes))
    data = json.loads((TEMPLATE_RECORD / "vehicle.json").read_text())
    data.update(id=folder.name, vin=vin(n), client_id=client_id)
    (folder / "vehicle.json").write_text(json.dumps(data, indent=2))
    return folder


def write_rules(
    rules_dir: Path, client_id: str, destinations: list[dict[str, Any]], *, upload: dict[str, Any] | None = None
) -> Path:
    """Write ``rules_dir/<client_id>.yaml``."""
    rules_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"client_id": client_id, "destinations": destinations}
    if upload is not None:
        document["upload"] = upload
    path = rules_dir / f"{client_id}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def ftp_destination(
    name: str,
    server: RunningServer,
    folder: str,
    password_env: str,
    *,
    port: int | None = None,
    username: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A plain-FTP destination of a rule file; ``port`` sends it elsewhere (a fault proxy, a closed port)."""
    return {
        "name": name,
        "url": f"ftp://{username or server.username}@{server.host}:{port or server.port}/{folder}",
        "password": "${" + password_env + "}",
        "allow_plain_ftp": True,
        **extra,
    }


def sftp_destination(
    name: str, server: RunningServer, folder: str, *, port: int | None = None, **extra: Any
) -> dict[str, Any]:
    """An SFTP destination of a rule file, key login, host key pinned; ``port``: through a proxy."""
    assert server.client_key_file is not None and server.host_key is not None
    return {
        "name": name,
        "url": f"sftp://{server.username}@{server.host}:{port or server.port}{server.remote_path(folder)}",
        "key_file": str(server.client_key_file),
        "host_key": server.host_key,
        **extra,
    }


def expected_files(folder: Path, ruleset: RuleSet) -> dict[str, bytes]:
    """``{file name: bytes}`` the pipeline builds for a record (the zip is deterministic)."""
    record = load_record(folder)
    plan = plan_record(record, ruleset, routes_for(ruleset, record))
    with tempfile.TemporaryDirectory(prefix="ftpexport-expected-") as tmp:
        package = make_package(plan, Path(tmp))
        result = {}
        for artifact in package.files:
            with artifact.open() as stream:
                result[artifact.name] = stream.read()
    return result


def files_under(root: Path) -> dict[str, int]:
    """``{relative path: size}`` of every file under ``root`` (hidden temporary files included)."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def part_files(root: Path) -> list[Path]:
    """Temporary upload files (``.NAME.part``) left under ``root``."""
    return sorted(p for p in root.rglob(".*.part") if p.is_file())


class ServerEvents:
    """What a misbehaving pyftpdlib server saw, shared by all its connections (thread-safe counts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, event: str) -> int:
        with self._lock:
            self._counts[event] += 1
            return self._counts[event]

    def __getitem__(self, event: str) -> int:
        with self._lock:
            return self._counts[event]


def counting_handler(
    events: ServerEvents,
    *,
    stor_reply: Callable[[int], str | None] | None = None,
    rnto_reply: str | None = None,
    mkd_reply: str | None = None,
) -> dict[str, Any]:
    """Handler attributes for ``servers.pyftpdlib_server("ftp", **attributes)``.

    Counts ``login``, ``login_failed``, ``STOR``, ``RNTO`` and ``MKD`` in ``events``. ``stor_reply(n)``
    is asked for the n-th STOR (1-based, over all connections): a reply line answers it instead of
    storing, None stores normally. ``rnto_reply`` / ``mkd_reply`` answer every RNTO / MKD.
    """
    from pyftpdlib.handlers import FTPHandler

    def on_login(self: FTPHandler, username: str) -> None:
        events.add("login")

    def on_login_failed(self: FTPHandler, username: str, password: str) -> None:
        events.add("login_failed")

    def ftp_STOR(self: FTPHandler, file: str, mode: str = "w") -> str | None:
        n = events.add("STOR")
        reply = stor_reply(n) if stor_reply is not None else None
        if reply is not None:
            self.respond(reply)
            return None
        return FTPHandler.ftp_STOR(self, file, mode)

    def ftp_RNTO(self: FTPHandler, path: str) -> tuple[str, str] | None:
        events.add("RNTO")
        if rnto_reply is not None:
            self._rnfr = None
            self.respond(rnto_reply)
            return None
        return FTPHandler.ftp_RNTO(self, path)

    def ftp_MKD(self: FTPHandler, path: str) -> str | None:
        events.add("MKD")
        if mkd_reply is not None:
            self.respond(mkd_reply)
            return None
        return FTPHandler.ftp_MKD(self, path)

    return {
        "on_login": on_login,
        "on_login_failed": on_login_failed,
        "ftp_STOR": ftp_STOR,
        "ftp_RNTO": ftp_RNTO,
        "ftp_MKD": ftp_MKD,
    }


def quota_dtp_handler(limit: int) -> type:
    """A pyftpdlib data handler that stops a STOR once more than ``limit`` bytes arrived, the way a
    server with a quota does: it closes the data connection and answers 552 (the partial file stays).

    Use it as ``pyftpdlib_server("ftp", dtp_handler=quota_dtp_handler(limit))``.
    """
    from pyftpdlib.handlers import DTPHandler

    class QuotaDTPHandler(DTPHandler):
        def handle_read(self) -> None:
            super().handle_read()
            if self.receive and not self._closed and self.tot_bytes_received > limit:
                self._resp = ("552 Disk quota exceeded.", lambda *args, **kwargs: None)
                self.close()

        handle_read_event = handle_read  # DTPHandler calls this alias of its own handle_read

    return QuotaDTPHandler


@contextlib.contextmanager
def small_tmpfs(server: RunningServer, rel: str, size: str) -> Iterator[Callable[[], None]]:
    """A tmpfs of ``size`` mounted at ``server.root / rel``, owned by the server's user; yields ``umount``."""
    mount_point = server.make_dir(rel)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs to fill the SFTP server's disk (needs root): {result.stderr.strip()}")
    mounted = True

    def umount() -> None:
        nonlocal mounted
        if mounted:
            subprocess.run(["umount", str(mount_point)], check=True, capture_output=True)
            mounted = False

    try:
        assert server.system_user is not None
        shutil.chown(mount_point, server.system_user, server.system_user)
        yield umount
    finally:
        # an open SFTP handle could keep it busy: then detach it lazily rather than leave it behind
        if mounted and subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)

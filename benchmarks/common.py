"""Shared helpers for the benchmarks: a tmpfs work folder, a synthetic inbox, real servers on loopback.

Everything here is for benchmarks run by hand (as root, on a throw-away machine), not for CI:

- ``work_root()``: a work folder on tmpfs (``/dev/shm`` by default), so disks do not take part;
- ``make_inbox()``: records of vehicles with N images of incompressible bytes (150-600 KB each);
- ``pyftpdlib_server()``: pyftpdlib in a process of its own (``ftp``, ``ftps``, ``ftp+ftps``);
- ``ensure_commands()``: installs missing tools (sshd, rclone, lftp) with apt-get.

OpenSSH and vsftpd are the tests' servers (``tests/servers.py``, ``tests/servers_ftpd.py``: the
``benchmarks`` package puts ``tests/`` on ``sys.path``); every server is a ``RunningServer`` on
127.0.0.1 whose ``root`` is the local folder its login directory maps to.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from certificates import make_tls_files
from daemons import HOST, stop_process, wait_for_greeting
from servers import RunningServer

REPO = Path(__file__).resolve().parents[1]

#: the names of the benchmark servers' certificate: the WAN relay's FTP passive address is 127.0.0.2
TLS_NAMES = ("127.0.0.1", "127.0.0.2", "localhost")

#: command -> Debian package that provides it
APT_PACKAGES = {
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "sftp": "openssh-client",
    "ssh-keygen": "openssh-client",
    "rclone": "rclone",
    "lftp": "lftp",
}
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def log(message: str) -> None:
    """Progress on stderr (stdout is for the results)."""
    print(message, file=sys.stderr, flush=True)


# --- tools


def which(command: str) -> str | None:
    """``shutil.which`` that also looks in the sbin folders (sshd, vsftpd)."""
    found = shutil.which(command)
    if found:
        return found
    for folder in _SBIN:
        path = Path(folder) / command
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def ensure_commands(commands: list[str], *, install: bool = True) -> dict[str, str | None]:
    """The path of each command; the missing ones are installed with apt-get first (when allowed)."""
    missing = [c for c in commands if which(c) is None]
    if missing and install and shutil.which("apt-get") and os.geteuid() == 0:
        packages = sorted({APT_PACKAGES[c] for c in missing if c in APT_PACKAGES})
        if packages:
            log(f"installing {' '.join(packages)} with apt-get ...")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
            result = subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                env=env,
                check=False,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                log(f"apt-get install failed: {result.stderr.strip()[-500:]}")
    return {c: which(c) for c in commands}


def tool_version(argv: list[str]) -> str:
    """The first line a ``--version`` style command prints, or "?"."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


# --- tmpfs


def filesystem_type(path: Path) -> str:
    """The file system type of the mount holding ``path`` (from /proc/mounts)."""
    path = path.resolve()
    best, kind = "", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            mount = parts[1].replace("\\040", " ")
            if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                best, kind = mount, parts[2]
    return kind


def work_root(path: Path | None = None) -> Path:
    """A work folder on tmpfs: ``path`` (mounted as tmpfs when it is not, if we are root) or /dev/shm/..."""
    if path is None:
        path = (
            Path("/dev/shm/ftpexport-bench")
            if Path("/dev/shm").is_dir()
            else Path(tempfile.gettempdir()) / "ftpexport-bench"
        )
    path.mkdir(parents=True, exist_ok=True)
    if filesystem_type(path) != "tmpfs" and os.geteuid() == 0:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(path)], capture_output=True, check=False
        )
        if result.returncode != 0:
            log(f"warning: {path} is not tmpfs and mounting one failed; disk speed will take part")
    # temporary users (sshd, vsftpd) must reach their home folders inside it
    path.chmod(0o755)
    return path


# --- synthetic inbox

_VIN_PREFIX = "WBENCH"


def make_vin(n: int) -> str:
    """A valid, unique VIN for record ``n``: 17 characters of A-Z0-9 without I, O, Q."""
    return f"{_VIN_PREFIX}{n:011d}"


@dataclass(frozen=True)
class Inbox:
    """A synthetic inbox: ``records`` folders of ``images`` images each."""

    path: Path
    records: int
    images: int
    image_bytes: int
    #: every file in the inbox (images and vehicle.json), with their bytes
    files: int
    bytes: int

    @property
    def folders(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if (p / "vehicle.json").is_file())


def make_inbox(
    folder: Path,
    records: int,
    *,
    client_id: str = "bench",
    images: int = 12,
    min_kb: int = 150,
    max_kb: int = 600,
    seed: int = 6,
    user_id: str = "u-1",
) -> Inbox:
    """Write (or reuse, when made with the same parameters) an inbox of vehicles with random images.

    Image bytes come from ``os.urandom`` (incompressible, like JPEG); sizes are drawn with ``seed``
    between ``min_kb`` and ``max_kb`` KiB. ``vehicle.json`` is written last in each folder.
    """
    params = {
        "records": records,
        "client_id": client_id,
        "images": images,
        "min_kb": min_kb,
        "max_kb": max_kb,
        "seed": seed,
        "user_id": user_id,
        "version": 1,
    }
    # the stamp sits beside the inbox: tools that upload the inbox tree must not see it
    stamp = folder.with_name(folder.name + ".params.json")
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return _inbox_info(folder, records, images)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    for n in range(1, records + 1):
        record = folder / f"veh-{n:06d}"
        record.mkdir()
        names = []
        for i in range(1, images + 1):
            name = f"{i:02d}.jpg"
            size = rng.randint(min_kb * 1024, max_kb * 1024)
            (record / name).write_bytes(os.urandom(size))
            names.append(name)
        document = {
            "id": record.name,
            "event": "vehicle.processed",
            "client_id": client_id,
            "user": {"id": user_id, "name": "Bench Mark", "email": "bench@example.invalid"},
            "vin": make_vin(n),
            "stock_number": f"S{n:05d}",
            "make": "Volkswagen",
            "model": "Golf",
            "year": 2021,
            "processed_at": "2026-11-20T14:03:00+01:00",
            "images": names,
            "extra": {"dealer_code": "BENCH"},
        }
        (record / "vehicle.json").write_text(json.dumps(document, indent=2) + "\n")
    stamp.write_text(json.dumps(params))
    return _inbox_info(folder, records, images)


def _inbox_info(folder: Path, records: int, images: int) -> Inbox:
    files = image_bytes = total = 0
    for record in folder.iterdir():
        if not record.is_dir():
            continue
        for path in record.iterdir():
            size = path.stat().st_size
            files += 1
            total += size
            if path.suffix == ".jpg":
                image_bytes += size
    return Inbox(folder, records, images, image_bytes, files, total)


def tree_size(root: Path) -> tuple[int, int]:
    """(files, bytes) under ``root``, hidden files included."""
    files = total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            files += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return files, total


# --- servers


@contextlib.contextmanager
def pyftpdlib_server(
    base: Path,
    scheme: str = "ftp",
    *,
    masquerade_address: str | None = None,
    passive_ports: tuple[int, int] | None = None,
) -> Iterator[RunningServer]:
    """pyftpdlib in a process of its own, so it does not share our GIL (the tests' runs in a thread).

    ``scheme``: ``ftp`` (no TLS), ``ftps`` (explicit TLS required) or ``ftp+ftps`` (TLS offered).
    """
    base = Path(tempfile.mkdtemp(prefix=f"pyftpdlib-{scheme}-", dir=base))
    try:
        root = base / "root"
        root.mkdir()
        tls = make_tls_files(base, TLS_NAMES) if "ftps" in scheme else None
        username, password = "bench", secrets.token_urlsafe(16)
        settings = {
            "scheme": scheme,
            "host": HOST,
            "root": str(root),
            "username": username,
            "password": password,
            "cert": str(tls.cert_file) if tls else None,
            "key": str(tls.key_file) if tls else None,
            "masquerade": masquerade_address,
            "passive_ports": passive_ports,
        }
        (base / "settings.json").write_text(json.dumps(settings))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.common", "serve-pyftpdlib", str(base / "settings.json")],
            stdout=subprocess.PIPE,
            stderr=(base / "log").open("wb"),
            env=env,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline().decode().strip()
            if not line.isdigit():
                raise RuntimeError(f"pyftpdlib did not start: {(base / 'log').read_text(errors='replace')[-2000:]}")
            port = int(line)
            wait_for_greeting(port, b"220", alive=lambda: process.poll() is None)
            yield RunningServer(scheme, HOST, port, username, password, root, ca_file=tls.ca_file if tls else None)
        finally:
            stop_process(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _serve_pyftpdlib(settings_file: str) -> None:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import FTPServer

    s = json.loads(Path(settings_file).read_text())
    authorizer = DummyAuthorizer()
    authorizer.add_user(s["username"], s["password"], s["root"], perm="elradfmwMT")
    handler: type[FTPHandler]
    if "ftps" in s["scheme"]:
        required = s["scheme"] == "ftps"
        handler = type(
            "H",
            (TLS_FTPHandler,),
            {
                "certfile": s["cert"],
                "keyfile": s["key"],
                "tls_control_required": required,
                "tls_data_required": required,
            },
        )
    else:
        handler = type("H", (FTPHandler,), {})
    handler.authorizer = authorizer
    handler.permit_privileged_ports = False
    if s["masquerade"]:
        handler.masquerade_address = s["masquerade"]
    if s["passive_ports"]:
        handler.passive_ports = range(s["passive_ports"][0], s["passive_ports"][1] + 1)
    server = FTPServer((s["host"], 0), handler)
    server.max_cons = 0
    print(server.address[1], flush=True)
    server.serve_forever(handle_exit=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve-pyftpdlib":
        _serve_pyftpdlib(sys.argv[2])
    else:
        sys.exit("usage: python -m benchmarks.common serve-pyftpdlib SETTINGS.json")

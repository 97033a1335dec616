"""Shared helpers for the benchmarks: a tmpfs work folder, a synthetic inbox, real servers on loopback.

Everything here is for benchmarks run by hand (as root, on a throw-away machine), not for CI:

- ``work_root()``: a work folder on tmpfs (``/dev/shm`` by default), so disks do not take part;
- ``make_inbox()``: records of vehicles with N images of incompressible bytes (150-600 KB each);
- ``openssh_server()``: OpenSSH ``sshd`` (internal-sftp) on a free 127.0.0.1 port, temporary user;
- ``vsftpd_server()``: vsftpd, plain FTP and explicit FTPS (TLS 1.2+, session reuse) on one port;
- ``pyftpdlib_server()``: pyftpdlib in a process of its own (``ftp``, ``ftps``);
- ``ensure_commands()``: installs missing tools (sshd, vsftpd, rclone, lftp) with apt-get.

Servers listen on 127.0.0.1 only (``host`` can name another loopback address). ``Server.root``
is the local folder the login directory maps to; ``Server.remote_root`` is what a client names
it (the absolute home for SFTP, ``""`` for FTP logins).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
READY_TIMEOUT = 15.0
REPO = Path(__file__).resolve().parents[1]
# The tests' server helpers (TLS material, SSH keys) serve the benchmarks too: they need only runtime dependencies.
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
from servers import _ssh_keygen, make_tls_files  # noqa: E402

#: the names of the benchmark servers' certificate: the WAN relay's FTP passive address is 127.0.0.2
TLS_NAMES = ("127.0.0.1", "127.0.0.2", "localhost")

#: command -> Debian package that provides it
APT_PACKAGES = {
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "sftp": "openssh-client",
    "ssh-keygen": "openssh-client",
    "vsftpd": "vsftpd",
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


@dataclass(frozen=True)
class Server:
    """A running server and how to reach it."""

    kind: str  # "openssh" | "vsftpd" | "pyftpdlib"
    schemes: tuple[str, ...]  # what it speaks: ("sftp",) or ("ftp", "ftps")
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    #: the local folder the login directory maps to
    root: Path
    #: how a client names ``root``: the absolute home (SFTP) or "" (FTP, relative to the login folder)
    remote_root: str = ""
    host_key: str | None = None  # SFTP: "ssh-ed25519 AAAA..."
    client_key_file: Path | None = None  # SFTP: a private key the server accepts
    ca_file: Path | None = None  # FTPS: the CA that signed the server certificate
    #: FTP passive ports (first, last) when fixed
    passive_ports: tuple[int, int] | None = None
    system_user: str | None = None

    def remote(self, rel: str) -> str:
        """The remote path of ``root / rel`` for this server's clients."""
        rel = rel.strip("/")
        if self.remote_root:
            return f"{self.remote_root.rstrip('/')}/{rel}" if rel else self.remote_root
        return rel

    def make_dir(self, rel: str) -> Path:
        """Create ``root / rel`` (one level), owned by the server's user."""
        path = self.root / rel
        path.mkdir(exist_ok=True)
        if self.system_user:
            shutil.chown(path, self.system_user, self.system_user)
        return path

    def clear(self, rel: str = "") -> None:
        """Delete ``root / rel`` (everything under ``root`` when ``rel`` is empty; ``root`` stays)."""
        target = self.root / rel if rel else self.root
        if rel:
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            return
        for child in self.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port_range(count: int, host: str = HOST, *, low: int = 20000, high: int = 32000) -> tuple[int, int]:
    """``count`` consecutive ports free on ``host`` (for FTP passive ranges), below the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(low, high - count)
        socks = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return first, first + count - 1
    raise RuntimeError(f"no {count} consecutive free ports on {host}")


def wait_for_greeting(
    host: str, port: int, expected: bytes, *, alive: Callable[[], bool] = lambda: True, timeout: float = READY_TIMEOUT
) -> None:
    """Connect until the server greets with ``expected`` (e.g. ``b"220"``)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"server on port {port} exited before it was ready")
        try:
            with socket.create_connection((host, port), timeout=2.0) as sock:
                greeting = sock.recv(64)
                if greeting.startswith(expected):
                    return
                last = greeting
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"server on {host}:{port} not ready after {timeout:g} s: {last!r}")


@contextlib.contextmanager
def system_user(home: Path) -> Iterator[tuple[str, str]]:
    """A temporary local user with a random password and ``home`` (created, owned by the user)."""
    username = f"ftpb{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", "--user-group", username],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(["chpasswd"], input=f"{username}:{password}", text=True, check=True, capture_output=True)
        home.mkdir(parents=True, exist_ok=True)
        shutil.chown(home, username, username)
        home.chmod(0o755)
        yield username, password
    finally:
        deadline = time.monotonic() + 10
        while True:  # userdel refuses while a session of the user is still closing
            result = subprocess.run(["userdel", username], capture_output=True, check=False)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if result.returncode != 0:
            subprocess.run(["userdel", "--force", username], capture_output=True, check=False)


def _child_pids(pid: int) -> list[int]:
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat_file.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat_file.parent.name))
    return children


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a daemon we started, its process group and its direct children; SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    for child in _child_pids(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, 15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait(timeout=10)


def _start_daemon(
    argv: list[str], configure: Callable[[int], None], greeting: bytes, log_file: Path, host: str, attempts: int = 5
) -> tuple[subprocess.Popen[bytes], int]:
    errors = []
    for _ in range(attempts):
        port = free_port(host)
        configure(port)
        with log_file.open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_greeting(host, port, greeting, alive=lambda p=process: p.poll() is None)
        except RuntimeError as exc:
            stop_process(process)
            errors.append(str(exc))
            continue
        return process, port
    raise RuntimeError(f"{argv[0]} did not start: {errors}\n{log_file.read_text(errors='replace')[-2000:]}")


@contextlib.contextmanager
def openssh_server(base: Path, *, host: str = HOST, extra_config: tuple[str, ...] = ()) -> Iterator[Server]:
    """OpenSSH's sshd (internal-sftp) on a free port of ``host``, with a temporary user homed in ``base``."""
    sshd = which("sshd")
    if sshd is None:
        raise RuntimeError("sshd is not installed (apt-get install -y openssh-server)")
    base = Path(tempfile.mkdtemp(prefix="sshd-", dir=base))
    base.chmod(0o755)
    try:
        etc = base / "etc"
        etc.mkdir()
        etc.chmod(0o755)
        home = base / "home"
        host_key = " ".join(_ssh_keygen(etc / "host_ed25519", "bench-host").split()[:2])
        client_key = etc / "client_ed25519"
        authorized_keys = etc / "authorized_keys"
        authorized_keys.write_text(_ssh_keygen(client_key, "bench-client") + "\n")
        authorized_keys.chmod(0o644)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        config = etc / "sshd_config"
        with system_user(home) as (username, password):

            def configure(port: int) -> None:
                lines = [
                    f"ListenAddress {host}",
                    f"Port {port}",
                    f"HostKey {etc / 'host_ed25519'}",
                    f"PidFile {etc / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized_keys}",
                    f"AllowUsers {username}",
                    "PasswordAuthentication yes",
                    "PubkeyAuthentication yes",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin no",
                    "UsePAM no",
                    "StrictModes no",
                    "UseDNS no",
                    "PrintMotd no",
                    "X11Forwarding no",
                    "AllowTcpForwarding no",
                    "MaxStartups 100:30:200",
                    "MaxSessions 100",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    *extra_config,
                    "",
                ]
                config.write_text("\n".join(lines))

            process, port = _start_daemon(
                [sshd, "-D", "-e", "-f", str(config)], configure, b"SSH-2.0-", etc / "sshd.log", host
            )
            try:
                yield Server(
                    "openssh",
                    ("sftp",),
                    host,
                    port,
                    username,
                    password,
                    home,
                    remote_root=str(home),
                    host_key=host_key,
                    client_key_file=client_key,
                    system_user=username,
                )
            finally:
                stop_process(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def vsftpd_server(
    base: Path, *, host: str = HOST, pasv_address: str | None = None, passive_ports: tuple[int, int] | None = None
) -> Iterator[Server]:
    """vsftpd speaking plain FTP and explicit FTPS (AUTH TLS; TLS 1.2+, data channel session reuse).

    ``pasv_address`` / ``passive_ports``: what PASV announces, for a proxy in front of the server.
    """
    vsftpd = which("vsftpd")
    if vsftpd is None:
        raise RuntimeError("vsftpd is not installed (apt-get install -y vsftpd)")
    base = Path(tempfile.mkdtemp(prefix="vsftpd-", dir=base))
    base.chmod(0o755)
    try:
        etc = base / "etc"
        etc.mkdir()
        tls = make_tls_files(etc, TLS_NAMES)
        home = base / "home"
        empty = base / "empty"  # vsftpd wants a secure_chroot_dir even when nobody is chrooted
        empty.mkdir()
        config = etc / "vsftpd.conf"
        with system_user(home) as (username, password):
            (etc / "users").write_text(username + "\n")

            def configure(port: int) -> None:
                lines = [
                    "listen=YES",
                    "listen_ipv6=NO",
                    f"listen_address={host}",
                    f"listen_port={port}",
                    "background=NO",
                    "anonymous_enable=NO",
                    "local_enable=YES",
                    "write_enable=YES",
                    "local_umask=022",
                    "chroot_local_user=NO",
                    "userlist_enable=YES",
                    "userlist_deny=NO",
                    f"userlist_file={etc / 'users'}",
                    "check_shell=NO",
                    "pam_service_name=vsftpd",
                    "seccomp_sandbox=NO",
                    f"secure_chroot_dir={empty}",
                    "pasv_enable=YES",
                    f"pasv_address={pasv_address or host}",
                    "pasv_addr_resolve=NO",
                    "port_enable=NO",
                    "connect_from_port_20=NO",
                    "max_clients=0",
                    "max_per_ip=0",
                    "idle_session_timeout=600",
                    # TLS is offered, not forced: the same server serves the ftp:// and ftps:// scenarios.
                    "ssl_enable=YES",
                    f"rsa_cert_file={tls.cert_file}",
                    f"rsa_private_key_file={tls.key_file}",
                    "ssl_tlsv1=NO",
                    "ssl_sslv2=NO",
                    "ssl_sslv3=NO",
                    "require_ssl_reuse=YES",
                    "force_local_data_ssl=NO",
                    "force_local_logins_ssl=NO",
                    "allow_anon_ssl=NO",
                    "ssl_ciphers=HIGH",
                    "xferlog_enable=NO",
                    "log_ftp_protocol=NO",
                    f"vsftpd_log_file={etc / 'log'}",
                ]
                if passive_ports:
                    lines += [f"pasv_min_port={passive_ports[0]}", f"pasv_max_port={passive_ports[1]}"]
                config.write_text("\n".join(lines) + "\n")

            process, port = _start_daemon([vsftpd, str(config)], configure, b"220", etc / "stdout.log", host)
            try:
                yield Server(
                    "vsftpd",
                    ("ftp", "ftps"),
                    host,
                    port,
                    username,
                    password,
                    home,
                    ca_file=tls.ca_file,
                    passive_ports=passive_ports,
                    system_user=username,
                )
            finally:
                stop_process(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def pyftpdlib_server(
    base: Path,
    scheme: str = "ftp",
    *,
    host: str = HOST,
    masquerade_address: str | None = None,
    passive_ports: tuple[int, int] | None = None,
) -> Iterator[Server]:
    """pyftpdlib in a process of its own, so it does not share our GIL.

    ``scheme``: ``ftp`` (no TLS), ``ftps`` (explicit TLS required) or ``ftp+ftps`` (TLS offered).
    """
    base = Path(tempfile.mkdtemp(prefix=f"pyftpdlib-{scheme}-", dir=base))
    try:
        root = base / "root"
        root.mkdir()
        tls = make_tls_files(base / "tls", TLS_NAMES) if "ftps" in scheme else None
        username, password = "bench", secrets.token_urlsafe(16)
        settings = {
            "scheme": scheme,
            "host": host,
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
            wait_for_greeting(host, port, b"220", alive=lambda: process.poll() is None)
            yield Server(
                "pyftpdlib",
                tuple(scheme.split("+")),
                host,
                port,
                username,
                password,
                root,
                ca_file=tls.ca_file if tls else None,
                passive_ports=passive_ports,
            )
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

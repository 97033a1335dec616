"""The plumbing of the test servers: free ports, readiness, temporary users, daemons started and stopped.

Shared by the servers of ``servers.py`` and ``servers_ftpd.py`` and by the benchmarks. Every
daemon listens on 127.0.0.1 only, on a port found free a moment before; it is ready when a client
can connect and read its greeting (no fixed sleeps).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HOST = "127.0.0.1"
READY_TIMEOUT = 10.0


# --- readiness


def free_port() -> int:
    """A port that was free a moment ago (for servers that cannot bind port 0 themselves)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def free_port_range(count: int, *, low: int = 20000, high: int = 32000) -> tuple[int, int]:
    """``count`` consecutive ports free on 127.0.0.1 (for FTP passive ranges), below the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(low, high - count)
        socks = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                # as the servers bind their passive ports: a port whose last connection is in
                # TIME_WAIT (thousands after a benchmark's transfers) is free for a listener
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((HOST, port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return first, first + count - 1
    raise RuntimeError(f"no {count} consecutive free ports on {HOST}")


def wait_for_greeting(
    port: int,
    expected: bytes,
    *,
    tls: ssl.SSLContext | None = None,
    alive: Callable[[], bool] = lambda: True,
    timeout: float = READY_TIMEOUT,
) -> None:
    """Connect until the server greets with ``expected`` (e.g. ``b"220"``), within ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"server on port {port} exited before it was ready")
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as raw:
                sock = tls.wrap_socket(raw, server_hostname=HOST) if tls else raw
                with sock:
                    greeting = sock.recv(64)
                    if greeting.startswith(expected):
                        return
                    last = RuntimeError(f"unexpected greeting {greeting!r}")
        except OSError as exc:
            last = exc
        # Poll again soon; the server is usually up after one or two rounds.
        threading.Event().wait(0.02)
    raise RuntimeError(f"server on port {port} not ready after {timeout:g} s: {last!r}")


# --- system users (OpenSSH, vsftpd, ProFTPD and Pure-FTPd's file owners)


@contextlib.contextmanager
def system_user(home: Path) -> Iterator[tuple[str, str]]:
    """A temporary local user with a random password and ``home`` (created, owned by the user)."""
    username = f"ftpx{secrets.token_hex(4)}"
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
        _delete_user(username)


def _delete_user(username: str) -> None:
    # userdel refuses while a process of the user lives (an sshd session closing): retry briefly.
    deadline = time.monotonic() + 10
    while True:
        result = subprocess.run(["userdel", username], capture_output=True, text=True)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        threading.Event().wait(0.1)
    if result.returncode != 0:
        subprocess.run(["userdel", "--force", username], capture_output=True)


def world_traversable_tempdir(prefix: str, parent: Path | None = None) -> Path:
    """A new temporary folder (in ``parent``, else the system's) that other users may traverse."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    # mkdtemp makes it 0700; the temporary user must reach its home inside it.
    path.chmod(0o755)
    return path


def _child_pids(pid: int) -> list[int]:
    """The direct children of process ``pid`` (Linux /proc)."""
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis.
            if int(stat_file.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat_file.parent.name))
    return children


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the daemon, its process group and the children serving connections, then wait for it."""
    if process.poll() is None:
        # sshd and vsftpd move each connection's process to a session of its own: end those by pid,
        # so a connection a test left open does not keep the temporary user busy.
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


def start_daemon(
    argv: list[str],
    configure: Callable[[int], None],
    greeting: bytes,
    log_file: Path,
    attempts: int = 5,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a daemon on a free port, retrying with another port if it cannot bind."""
    errors = []
    for _ in range(attempts):
        port = free_port()
        configure(port)
        with log_file.open("ab") as log:
            # A session of its own, so stopping it also ends the children serving connections.
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_greeting(port, greeting, alive=lambda p=process: p.poll() is None)
        except RuntimeError as exc:
            stop_process(process)
            errors.append(str(exc))
            continue
        return process, port
    log_text = log_file.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{argv[0]} did not start: {errors}\n{log_text}")

"""An FTP server with many users (pyftpdlib, one home folder each) in a process of its own, for the
scale benchmarks.

``python -m benchmarks.ftp_server CONFIG.json`` is its entry point.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from daemons import HOST, wait_for_greeting

from .product import ROOT, product_env, terminate


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
        [sys.executable, "-m", "benchmarks.ftp_server", str(config)],
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
            terminate(process, 10)
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


if __name__ == "__main__":
    if len(sys.argv) == 2:
        _serve_ftp(sys.argv[1])
    else:
        sys.exit("usage: python -m benchmarks.ftp_server CONFIG.json")

"""Real FTP, FTPS, implicit FTPS (pyftpdlib) and SFTP (OpenSSH) servers on 127.0.0.1 for the tests.

vsftpd, ProFTPD and Pure-FTPd are in ``servers_ftpd.py``; what every server needs (free ports, readiness,
temporary users, starting and stopping a daemon) is in ``daemons.py``, TLS material in ``certificates.py``.
The benchmarks use these servers too.

Every server listens on 127.0.0.1 only, on a port the OS picked, with a random password; a server
is ready when a client can connect and read its greeting (no fixed sleeps). ``tests/conftest.py``
turns these into fixtures; a test sees a ``RunningServer``.
"""

from __future__ import annotations

import contextlib
import posixpath
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certificates import TLSFiles, client_tls_context, make_tls_files
from daemons import HOST, start_daemon, stop_process, system_user, wait_for_greeting, world_traversable_tempdir
from pydantic import SecretStr

from ftpexport.transport import Endpoint

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class RunningServer:
    """A server a test can talk to, and the local folder its login directory maps to."""

    scheme: str  # "ftp" | "ftps" | "ftps+implicit" | "sftp"
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    #: the local folder the login directory maps to: uploaded files appear here
    root: Path
    ca_file: Path | None = None
    host_key: str | None = None
    client_key_file: Path | None = None
    #: the absolute remote path of the login directory (SFTP); "" when paths are relative (FTP)
    home: str = ""
    #: the system user owning ``root`` (OpenSSH, vsftpd, ProFTPD, Pure-FTPd); None when the server runs in-process
    system_user: str | None = None
    #: False for a server that refuses every rename (OpenSSH's sftp-server ``-P rename,posix-rename``)
    renames: bool = True

    def endpoint(self, **overrides: Any) -> Endpoint:
        """A ready Endpoint for this server: password, ca_file / host key filled in, timeout 10 s."""
        values: dict[str, Any] = {
            "scheme": self.scheme,
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": SecretStr(self.password),
            "timeout": 10.0,
            "ca_file": self.ca_file,
            "host_keys": (self.host_key,) if self.host_key else (),
        }
        values.update(overrides)
        return Endpoint(**values)

    def remote_path(self, rel: str = "") -> str:
        """The path to hand to a transport for ``root / rel``."""
        rel = rel.strip("/")
        if self.home:
            return posixpath.join(self.home, rel) if rel else self.home
        return rel

    def url(self, rel: str = "") -> str:
        """A URL for rule files: FTP paths are relative to the login directory, SFTP paths absolute."""
        rel = rel.strip("/")
        path = self.remote_path(rel)
        if self.home:
            # self.home is absolute, so the URL path is too: sftp://user@host:port/abs/home/rel
            return f"{self.scheme}://{self.username}@{self.host}:{self.port}{path}"
        return f"{self.scheme}://{self.username}@{self.host}:{self.port}/{path}"

    def make_file(self, rel: str, data: bytes = b"") -> Path:
        """Create ``root / rel`` (and its parents) as if the server's user had uploaded it."""
        path = self.root / rel
        self.make_dir(str(Path(rel).parent))
        path.write_bytes(data)
        self._own(path)
        return path

    def make_dir(self, rel: str) -> Path:
        """Create directory ``root / rel`` and its parents, owned by the server's user."""
        path = self.root
        for part in Path(rel).parts:
            path = path / part
            if not path.exists():
                path.mkdir()
                self._own(path)
        return path

    def _own(self, path: Path) -> None:
        # A real server's user must be able to replace and delete what a test prepared.
        if self.system_user:
            shutil.chown(path, self.system_user, self.system_user)

    def clear_root(self) -> None:
        """Delete everything under ``root`` (the folder itself stays, owner and mode unchanged)."""
        for child in self.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


# --- pyftpdlib


def _pyftpdlib_handler(
    scheme: str, username: str, password: str, root: Path, tls: TLSFiles | None, overrides: dict[str, Any]
) -> type:
    """A handler class for one server; options live on this subclass, never on pyftpdlib's classes."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler

    authorizer = DummyAuthorizer()
    authorizer.add_user(username, password, str(root), perm="elradfmwMT")
    attributes: dict[str, Any] = {
        "authorizer": authorizer,
        "banner": f"ftpexport test {scheme} server",
        # pyftpdlib waits 3 s before answering a wrong password; tests need not.
        "auth_failed_timeout": 0.1,
    }
    if scheme == "ftp":
        return type("TestFTPHandler", (FTPHandler,), attributes | overrides)

    from OpenSSL import SSL
    from pyftpdlib.handlers import TLS_FTPHandler

    assert tls is not None
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate_chain_file(str(tls.cert_file))
    context.use_privatekey_file(str(tls.key_file))
    attributes.update(ssl_context=context, tls_control_required=True, tls_data_required=True)
    attributes.update(overrides)
    if scheme == "ftps":
        return type("TestFTPSHandler", (TLS_FTPHandler,), attributes)
    return type("TestImplicitFTPSHandler", (ImplicitTLSHandlerMixin, TLS_FTPHandler), attributes)


class ImplicitTLSHandlerMixin:
    """Makes pyftpdlib's TLS_FTPHandler implicit: TLS handshake first, then the 220 banner.

    ``TLS_FTPHandler`` only secures the connection on AUTH TLS (``secure_connection``); here we
    secure it as soon as the client is accepted and greet once the handshake completes.
    """

    _greeted = False

    def handle(self) -> None:
        self.secure_connection(self.ssl_context)  # type: ignore[attr-defined]

    def handle_ssl_established(self) -> None:
        if not self._greeted:
            self._greeted = True
            super().handle()  # type: ignore[misc]  # FTPHandler.handle: on_connect + 220 banner


class PyftpdlibServer:
    """A pyftpdlib server with its own IOLoop, served by one thread until ``stop()``."""

    def __init__(self, scheme: str, workdir: Path, handler_attributes: dict[str, Any] | None = None) -> None:
        from pyftpdlib.ioloop import IOLoop
        from pyftpdlib.servers import FTPServer

        self.scheme = scheme
        self.root = workdir / "root"
        self.root.mkdir()
        self.tls = make_tls_files(workdir) if scheme != "ftp" else None
        self.username = f"user-{secrets.token_hex(4)}"
        self.password = secrets.token_urlsafe(16)
        handler = _pyftpdlib_handler(
            scheme, self.username, self.password, self.root, self.tls, handler_attributes or {}
        )
        # Own IOLoop: pyftpdlib's default one is a process-wide singleton shared by every server.
        self._server = FTPServer((HOST, 0), handler, ioloop=IOLoop())
        self.port: int = self._server.address[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"test-{scheme}-server-{self.port}", daemon=True)

    def _serve(self) -> None:
        try:
            # Poll in short rounds so that stop() is noticed quickly (serve_forever cannot be interrupted).
            while not self._stopping.is_set():
                self._server.ioloop.loop(timeout=0.05, blocking=False)
        finally:
            self._server.close_all()

    def start(self) -> RunningServer:
        """Serve in a thread; return once a client can read the banner."""
        self._thread.start()
        tls = client_tls_context(self.tls.ca_file) if self.scheme == "ftps+implicit" and self.tls else None
        wait_for_greeting(self.port, b"220", tls=tls, alive=self._thread.is_alive)
        return RunningServer(
            scheme=self.scheme,
            host=HOST,
            port=self.port,
            username=self.username,
            password=self.password,
            root=self.root,
            ca_file=self.tls.ca_file if self.tls else None,
        )

    def stop(self) -> None:
        """Stop serving, close every connection and join the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        else:
            self._server.close_all()


@contextlib.contextmanager
def pyftpdlib_server(scheme: str, **handler_attributes: Any) -> Iterator[RunningServer]:
    """A running pyftpdlib server for ``ftp``, ``ftps`` or ``ftps+implicit``, stopped on exit.

    ``handler_attributes`` are set on this server's handler subclass (e.g. to make it misbehave).
    """
    with tempfile.TemporaryDirectory(prefix=f"ftpexport-{scheme.replace('+', '-')}-") as tmp:
        server = PyftpdlibServer(scheme, Path(tmp), handler_attributes)
        try:
            yield server.start()
        finally:
            server.stop()


# --- OpenSSH


def _ssh_keygen(path: Path, comment: str) -> str:
    """Generate an ed25519 key pair without passphrase; return the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


@contextlib.contextmanager
def openssh_server(
    *,
    refuse: tuple[str, ...] = (),
    idle_timeout: int | None = None,
    extra_config: tuple[str, ...] = (),
    parent: Path | None = None,
    log_level: str = "VERBOSE",
) -> Iterator[RunningServer]:
    """OpenSSH's sshd as root with its own config, host key and temporary user; SFTP only.

    ``refuse``: SFTP requests the server answers with "permission denied" (``internal-sftp -P``,
    names as ``sftp-server -Q requests`` lists them): ``("rename", "posix-rename")`` is a server
    that never renames, as some hosting providers configure it; ``("posix-rename",)`` one without
    the OpenSSH extension, whose plain rename does not replace. ``idle_timeout``: sshd closes the
    SFTP channel, then the connection, after that many seconds without traffic (``ChannelTimeout``,
    OpenSSH 9.2+). ``extra_config`` lines go at the end of sshd_config, e.g. ``("Ciphers aes128-cbc",)``
    for a server that offers only that cipher. ``parent``: the folder to make the server's temporary
    folder in (the benchmarks' tmpfs), else the system's. ``log_level``: sshd's ``LogLevel``.
    """
    subsystem = f"internal-sftp -P {','.join(refuse)}" if refuse else "internal-sftp"
    idle = [f"ChannelTimeout session:*={idle_timeout}s", f"UnusedConnectionTimeout {idle_timeout}s"]
    base = world_traversable_tempdir("ftpexport-sshd-", parent)
    try:
        etc = base / "etc"
        etc.mkdir()
        etc.chmod(0o755)
        home = base / "home"
        host_key_line = _ssh_keygen(etc / "host_ed25519", "ftpexport-test-host")
        host_key = " ".join(host_key_line.split()[:2])
        client_key = etc / "client_ed25519"
        client_pub = _ssh_keygen(client_key, "ftpexport-test-client")
        authorized_keys = etc / "authorized_keys"
        authorized_keys.write_text(client_pub + "\n")
        # sshd reads authorized_keys as the user; the key itself only matters to the test (root).
        authorized_keys.chmod(0o644)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        config = etc / "sshd_config"
        with system_user(home) as (username, password):

            def configure(port: int) -> None:
                config.write_text(
                    "\n".join(
                        [
                            f"ListenAddress {HOST}",
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
                            f"Subsystem sftp {subsystem}",
                            *(idle if idle_timeout else []),
                            f"LogLevel {log_level}",
                            *extra_config,
                            "",
                        ]
                    )
                )

            process, port = start_daemon(
                [SSHD, "-D", "-e", "-f", str(config)], configure, b"SSH-2.0-", etc / "sshd.log"
            )
            try:
                yield RunningServer(
                    scheme="sftp",
                    host=HOST,
                    port=port,
                    username=username,
                    password=password,
                    root=home,
                    host_key=host_key,
                    client_key_file=client_key,
                    home=str(home),
                    system_user=username,
                    renames="rename" not in refuse,
                )
            finally:
                stop_process(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)

"""vsftpd, ProFTPD and Pure-FTPd on 127.0.0.1 for the tests, run from the folders ``servers_install.py`` unpacked.

Each server runs in the foreground as root with its own configuration, log files, TLS certificate
(signed by a CA of its own, ``certificates.make_tls_files``) and login folder under a temporary folder,
on a free port of 127.0.0.1; passive data connections are opened on 127.0.0.1 too. A server is
ready once it greets a client (``daemons.wait_for_greeting``) and is stopped by its pid.

Logins: vsftpd authenticates system users through PAM (``servers_install.PAM_SERVICE``), so its
user is a temporary system user; ProFTPD (``AuthUserFile``) and Pure-FTPd (PureDB, ``pure-pw``)
check a user file of their own, whose virtual user owns its files as a temporary system user.

``scheme`` is ``"ftp"`` (TLS not offered) or ``"ftps"`` (explicit FTPS, TLS 1.2+, required for the
login and for every data connection, which must resume the control connection's TLS session).
``idle_timeout`` (seconds) makes the server close a connection idle that long.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import servers_install
from certificates import make_tls_files
from daemons import HOST, start_daemon, stop_process, system_user, world_traversable_tempdir
from servers import RunningServer

INSTALL_HINT = "run `python3 tests/servers_install.py` as root first (.ci/run does)"


def unpacked(server: str, relative: str) -> Path:
    """A program of a server unpacked by ``servers_install.py``; a clear error when it is not there."""
    path = servers_install.program(server, relative)
    if not path.exists():
        raise RuntimeError(f"{path} is missing: {INSTALL_HINT}")
    return path


def _config_lines(lines: list[str | None]) -> str:
    return "\n".join(line for line in lines if line is not None) + "\n"


def _running(
    scheme: str, port: int, username: str, password: str, root: Path, tls_ca: Path | None, owner: str
) -> RunningServer:
    return RunningServer(
        scheme=scheme,
        host=HOST,
        port=port,
        username=username,
        password=password,
        root=root,
        ca_file=tls_ca,
        system_user=owner,
    )


# --- vsftpd


@contextlib.contextmanager
def vsftpd_server(
    scheme: str = "ftps",
    *,
    idle_timeout: int | None = None,
    parent: Path | None = None,
    pasv_address: str = HOST,
    passive_ports: tuple[int, int] | None = None,
    tls_names: tuple[str, ...] = (HOST, "localhost"),
    log_protocol: bool = True,
    client_ca: Path | None = None,
) -> Iterator[RunningServer]:
    """vsftpd 3.0.3; with ``ftps``: ``require_ssl_reuse=YES``, TLS forced for logins and data;
    ``client_ca``: mutual TLS, a client certificate signed by that CA required (``require_cert=YES``,
    ``validate_cert=YES``);
    ``ftp+ftps``: TLS offered, not forced (one server for ``ftp://`` and ``ftps://`` clients).

    For the benchmarks: ``parent`` (where its temporary folder goes, else the system's temporary
    folder), ``pasv_address`` / ``passive_ports`` (what PASV announces, for a proxy in front of the
    server), ``tls_names`` (the names of its certificate), ``log_protocol=False`` (no command log).
    """
    vsftpd = unpacked("vsftpd", "usr/sbin/vsftpd")
    base = world_traversable_tempdir(f"ftpexport-vsftpd-{scheme}-", parent)
    try:
        etc = base / "etc"
        etc.mkdir()
        tls = make_tls_files(etc, tls_names) if "ftps" in scheme else None
        forced = "YES" if scheme == "ftps" else "NO"
        home = base / "home"
        # vsftpd refuses to run without its secure_chroot_dir, even when nobody is chrooted.
        empty = base / "empty"
        empty.mkdir()
        config = etc / "vsftpd.conf"
        with system_user(home) as (username, password):
            user_list = etc / "users"
            user_list.write_text(username + "\n")
            tls_lines: list[str | None] = ["ssl_enable=NO"]
            if tls is not None:
                tls_lines = [
                    "ssl_enable=YES",
                    f"rsa_cert_file={tls.cert_file}",
                    f"rsa_private_key_file={tls.key_file}",
                    # Debian's vsftpd 3.0.3 has no ssl_tlsv1_2 option: ssl_tlsv1=NO drops TLS 1.0
                    # and the client refuses anything below 1.2 anyway.
                    "ssl_tlsv1=NO",
                    "ssl_sslv2=NO",
                    "ssl_sslv3=NO",
                    "require_ssl_reuse=YES",
                    f"force_local_data_ssl={forced}",
                    f"force_local_logins_ssl={forced}",
                    "allow_anon_ssl=NO",
                    "ssl_ciphers=HIGH",
                ]
                if client_ca is not None:
                    tls_lines += ["require_cert=YES", "validate_cert=YES", f"ca_certs_file={client_ca}"]

            def configure(port: int) -> None:
                config.write_text(
                    _config_lines(
                        [
                            "listen=YES",
                            "listen_ipv6=NO",
                            f"listen_address={HOST}",
                            f"listen_port={port}",
                            "background=NO",
                            "anonymous_enable=NO",
                            "local_enable=YES",
                            "write_enable=YES",
                            "local_umask=022",
                            "chroot_local_user=NO",
                            "userlist_enable=YES",
                            "userlist_deny=NO",
                            f"userlist_file={user_list}",
                            "check_shell=NO",
                            f"pam_service_name={servers_install.PAM_SERVICE}",
                            "seccomp_sandbox=NO",
                            f"secure_chroot_dir={empty}",
                            "pasv_enable=YES",
                            f"pasv_address={pasv_address}",
                            "pasv_addr_resolve=NO",
                            "port_enable=NO",
                            "connect_from_port_20=NO",
                            # a wrong password is answered at once (vsftpd waits 1 s by default)
                            "delay_failed_login=0",
                            *(
                                [f"pasv_min_port={passive_ports[0]}", f"pasv_max_port={passive_ports[1]}"]
                                if passive_ports
                                else []
                            ),
                            f"idle_session_timeout={idle_timeout}" if idle_timeout else None,
                            *tls_lines,
                            f"vsftpd_log_file={etc / 'vsftpd.log'}",
                            f"xferlog_enable={'YES' if log_protocol else 'NO'}",
                            f"log_ftp_protocol={'YES' if log_protocol else 'NO'}",
                        ]
                    )
                )

            process, port = start_daemon([str(vsftpd), str(config)], configure, b"220", etc / "stdout.log")
            try:
                yield _running(scheme, port, username, password, home, tls and tls.ca_file, username)
            finally:
                stop_process(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- ProFTPD


def _crypt(password: str) -> str:
    """A SHA-512 crypt(3) hash, as /etc/shadow holds them (ProFTPD's AuthUserFile checks it with crypt)."""
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, text=True, check=True, capture_output=True
    )
    return hashed.stdout.strip()


@contextlib.contextmanager
def proftpd_server(
    scheme: str = "ftps",
    *,
    idle_timeout: int | None = None,
    max_clients_per_user: int | None = None,
    extra_config: Sequence[str] = (),
) -> Iterator[RunningServer]:
    """ProFTPD 1.3.8 with a virtual user (``AuthUserFile``); ``ftps``: mod_tls, ``TLSRequired on``;
    ``sftp``: mod_sftp (password logins, an RSA host key, absolute paths: ``home`` is set).

    mod_tls requires data connections to resume the control connection's TLS session unless
    ``TLSOptions NoSessionReuseRequired`` is set, which it is not here. ``max_clients_per_user``:
    ``MaxClientsPerUser`` (mod_sftp refuses one more with SSH disconnect reason 12, FTP with a 530).
    ``extra_config``: more lines of ``proftpd.conf`` (e.g. ``MaxLoginAttempts 1``).
    """
    proftpd = unpacked("proftpd", "usr/sbin/proftpd")
    modules = unpacked("proftpd", "usr/lib/proftpd/mod_tls.so").parent
    base = world_traversable_tempdir(f"ftpexport-proftpd-{scheme}-")
    try:
        etc = base / "etc"
        etc.mkdir()
        tls = make_tls_files(etc) if scheme == "ftps" else None
        home = base / "home"
        config = etc / "proftpd.conf"
        with system_user(home) as (owner, _):
            username = f"virtual-{secrets.token_hex(4)}"
            password = secrets.token_urlsafe(16)
            uid, gid = home.stat().st_uid, home.stat().st_gid
            users = etc / "passwd"
            users.write_text(f"{username}:{_crypt(password)}:{uid}:{gid}::{home}:/bin/sh\n")
            groups = etc / "group"
            groups.write_text(f"{owner}:x:{gid}:{username}\n")
            # ProFTPD refuses user files that others can write; keep them private.
            users.chmod(0o600)
            groups.chmod(0o600)
            tls_lines: list[str | None] = []
            if tls is not None:
                tls_lines = [
                    f"ModulePath {modules}",
                    "LoadModule mod_tls.c",
                    "<IfModule mod_tls.c>",
                    "TLSEngine on",
                    "TLSRequired on",
                    "TLSProtocol TLSv1.2 TLSv1.3",
                    f"TLSECCertificateFile {tls.cert_file}",
                    f"TLSECCertificateKeyFile {tls.key_file}",
                    f"TLSLog {etc / 'tls.log'}",
                    "</IfModule>",
                ]

            sftp_lines: list[str | None] = []
            host_key = None
            if scheme == "sftp":
                key_file = etc / "ssh_host_rsa_key"
                subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f",
                                str(key_file)], check=True)  # fmt: skip
                host_key = " ".join(key_file.with_suffix(".pub").read_text().split()[:2])
                sftp_lines = [
                    f"ModulePath {modules}",
                    "LoadModule mod_sftp.c",
                    "SFTPEngine on",
                    f"SFTPHostKey {key_file}",
                    "SFTPAuthMethods password",
                    f"SFTPLog {etc / 'sftp.log'}",
                ]

            def configure(port: int) -> None:
                config.write_text(
                    _config_lines(
                        [
                            "ServerType standalone",
                            'ServerName "ftpexport test proftpd"',
                            "UseIPv6 off",
                            f"DefaultAddress {HOST}",
                            # bind 127.0.0.1 only (without it ProFTPD listens on every address)
                            "SocketBindTight on",
                            f"Port {port}",
                            "User nobody",
                            "Group nogroup",
                            f"PidFile {etc / 'proftpd.pid'}",
                            f"ScoreboardFile {etc / 'proftpd.scoreboard'}",
                            f"SystemLog {etc / 'proftpd.log'}",
                            f"TransferLog {etc / 'xfer.log'}",
                            "WtmpLog off",
                            "UseReverseDNS off",
                            # mod_delay slows every login down on purpose, a wrong password most
                            "DelayEngine off",
                            "AuthPAM off",
                            "AuthOrder mod_auth_file.c",
                            f"AuthUserFile {users}",
                            f"AuthGroupFile {groups}",
                            "RequireValidShell off",
                            "Umask 022",
                            "AllowOverwrite on",
                            f"TimeoutIdle {idle_timeout}" if idle_timeout else None,
                            f"MaxClientsPerUser {max_clients_per_user}" if max_clients_per_user else None,
                            *tls_lines,
                            *sftp_lines,
                            *extra_config,
                        ]
                    )
                )

            greeting = b"SSH-" if scheme == "sftp" else b"220"
            process, port = start_daemon(
                [str(proftpd), "--nodaemon", "--config", str(config)], configure, greeting, etc / "stdout.log"
            )
            try:
                running = _running(scheme, port, username, password, home, tls and tls.ca_file, owner)
                if scheme == "sftp":
                    running = dataclasses.replace(running, host_key=host_key, home=str(home))
                yield running
            finally:
                stop_process(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- Pure-FTPd


@contextlib.contextmanager
def pureftpd_server(
    scheme: str = "ftps", *, idle_timeout: int | None = None, refuse_rename: bool = False
) -> Iterator[RunningServer]:
    """Pure-FTPd 1.0.50 with a virtual user in a PureDB file (``pure-pw mkdb``), chrooted to its home;
    ``ftps``: ``--tls 3`` (no login nor data connection without TLS).

    Its idle timeout is in whole minutes: ``idle_timeout`` is rounded up to one. ``refuse_rename``:
    ``--norename``, RNFR is refused.
    """
    pureftpd = unpacked("pure-ftpd", "usr/sbin/pure-ftpd")
    pure_pw = unpacked("pure-ftpd", "usr/bin/pure-pw")
    base = world_traversable_tempdir(f"ftpexport-pureftpd-{scheme}-")
    try:
        etc = base / "etc"
        etc.mkdir()
        tls = make_tls_files(etc) if scheme == "ftps" else None
        home = base / "home"
        with system_user(home) as (owner, _):
            username = f"virtual-{secrets.token_hex(4)}"
            password = secrets.token_urlsafe(16)
            passwd_file, database = etc / "pureftpd.passwd", etc / "pureftpd.pdb"
            # The line ``pure-pw useradd -d`` writes ("/./": chrooted to its home), with a SHA-512
            # crypt hash: pure-pw's own argon2id (t=511) costs seconds per login on a busy machine.
            uid, gid = home.stat().st_uid, home.stat().st_gid
            passwd_file.write_text(f"{username}:{_crypt(password)}:{uid}:{gid}::{home}/./::::::::::::\n")
            passwd_file.chmod(0o600)
            subprocess.run(
                [str(pure_pw), "mkdb", str(database), "-f", str(passwd_file)], check=True, capture_output=True
            )
            argv = [
                str(pureftpd),
                "--ipv4only",
                "--noanonymous",
                "--dontresolve",
                "--login", f"puredb:{database}",
                "--pidfile", str(etc / "pure-ftpd.pid"),
                "--umask", "133:022",
                "--maxclientsperip", "50",
                "--maxclientsnumber", "50",
                "--verboselog",
            ]  # fmt: skip
            if idle_timeout:
                argv += ["--maxidletime", str(math.ceil(idle_timeout / 60))]
            if refuse_rename:
                argv.append("--norename")
            if tls is not None:
                # 3: no login nor data connection without TLS
                argv += ["--tls", "3", "--certfile", f"{tls.cert_file},{tls.key_file}"]
            # the port is only known in configure(), which start_daemon calls before it starts argv
            argv += ["--bind", ""]

            def configure(port: int) -> None:
                argv[-1] = f"{HOST},{port}"

            process, port = start_daemon(argv, configure, b"220", etc / "stdout.log")
            try:
                running = _running(scheme, port, username, password, home, tls and tls.ca_file, owner)
                yield dataclasses.replace(running, renames=not refuse_rename)
            finally:
                stop_process(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)

"""The bare client of ``benchmarks.export``: paramiko or ftplib uploading a folder, nothing else.

    python benchmarks/bare_client.py sftp HOST PORT USER SOURCE REMOTE --key-file KEY [--conns N]
    BARE_PASSWORD=... python benchmarks/bare_client.py ftp|ftps HOST PORT USER SOURCE REMOTE [--ca-file CA]

Each file of ``SOURCE`` (and of its sub-folders, made on the server first) goes up as ftpexport
sends it: under the temporary name ``.NAME.part``, its size checked, then renamed, over ``--conns``
connections, with the options ftpexport uses (TCP_NODELAY; SFTP: ftpexport's cipher order,
pipelined writes as large as the server's limits@openssh.com allow (255 KiB on OpenSSH; else
32 KiB), each packet sent without copies; FTP: ``TYPE I`` once, ``sendfile`` on plain FTP, 256 KiB blocks and
``PROT P`` on FTPS, SIZE, RNFR/RNTO). No ledger, no hashing, no zip, no rules: the time of
``ftpexport run`` over this client's is what ftpexport's own pipeline costs.

A script run by path (not ``-m benchmarks...``), so its start-up is Python and paramiko or
ftplib alone. Exits 1 with the error on stderr when an upload fails.
"""

from __future__ import annotations

import argparse
import contextlib
import ftplib
import os
import queue
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

BLOCK = 256 * 1024
#: ftpexport's cipher order (ftpexport/transport/ssh_policy.py MODERN["ciphers"])
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr")


def _files(source: Path) -> list[tuple[str, Path]]:
    """(remote folder relative to REMOTE, local file), folders in order, files by name."""
    found = []
    for folder, dirs, names in os.walk(source):
        dirs.sort()
        rel = os.path.relpath(folder, source)
        for name in sorted(names):
            found.append(("" if rel == "." else rel, Path(folder) / name))
    return found


def _no_delay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _sftp_client_class() -> type:
    import paramiko

    class SFTPClient(paramiko.SFTPClient):
        """paramiko's client, each packet sent without copying its rest after a partial send (as ftpexport)."""

        def _write_all(self, out: bytes) -> None:
            view = memoryview(out)
            while view:
                n = self.sock.send(view)
                if n <= 0:
                    raise EOFError()
                view = view[n:]

    return SFTPClient


def _write_length(sftp: Any) -> int:
    """The write request size ftpexport uses: the server's max-write-length from limits@openssh.com
    (255 KiB on OpenSSH), else paramiko's 32 KiB."""
    from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY

    try:
        kind, reply = sftp._request(CMD_EXTENDED, "limits@openssh.com")
    except OSError:
        return 32768
    if kind != CMD_EXTENDED_REPLY:
        return 32768
    packet, _read, write = reply.get_int64(), reply.get_int64(), reply.get_int64()
    return max(32768, min(write, 261120, packet - 64))


_SFTPClient: Any = None


class SFTPUploader:
    def __init__(self, args: argparse.Namespace) -> None:
        import paramiko

        global _SFTPClient
        _SFTPClient = _sftp_client_class()
        sock = socket.create_connection((args.host, args.port), timeout=60)
        _no_delay(sock)
        self.transport = paramiko.Transport(sock)
        options = self.transport.get_security_options()
        options.ciphers = tuple(c for c in CIPHERS if c in options.ciphers)
        self.transport.start_client(timeout=60)
        self.transport.auth_publickey(args.user, paramiko.PKey.from_path(args.key_file))
        sftp = _SFTPClient.from_transport(self.transport)
        assert sftp is not None
        self.sftp = sftp
        self.block = _write_length(sftp)

    def mkdir(self, path: str) -> None:
        try:
            self.sftp.mkdir(path)
        except OSError:
            self.sftp.stat(path)  # it exists (or raise)

    def upload(self, local: Path, folder: str, name: str, size: int) -> None:
        temporary = f"{folder}/.{name}.part"
        with local.open("rb") as source, self.sftp.open(temporary, "wb") as remote:
            remote.set_pipelined(True)
            remote.MAX_REQUEST_SIZE = self.block  # one write request per block
            while block := source.read(self.block):
                remote.write(block)
        remote_size = self.sftp.stat(temporary).st_size
        if remote_size != size:
            raise RuntimeError(f"{temporary}: {remote_size} bytes on the server, {size} sent")
        self.sftp.posix_rename(temporary, f"{folder}/{name}")

    def close(self) -> None:
        self.sftp.close()
        self.transport.close()


class FTPUploader:
    def __init__(self, args: argparse.Namespace) -> None:
        password = os.environ["BARE_PASSWORD"]
        if args.protocol == "ftps":
            context = ssl.create_default_context(cafile=args.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            ftp: ftplib.FTP = _ReusingFTPS(context=context, timeout=60)
        else:
            ftp = ftplib.FTP(timeout=60)
        ftp.connect(args.host, args.port)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.auth()
        ftp.login(args.user, password)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        ftp.voidcmd("TYPE I")
        self.ftp = ftp

    def mkdir(self, path: str) -> None:
        with contextlib.suppress(ftplib.error_perm):  # exists: the STOR would say otherwise
            self.ftp.mkd(path)

    def upload(self, local: Path, folder: str, name: str, size: int) -> None:
        ftp = self.ftp
        temporary = f"{folder}/.{name}.part"
        conn = ftp.transfercmd(f"STOR {temporary}")
        _no_delay(conn)
        with conn, local.open("rb") as source:
            if isinstance(conn, ssl.SSLSocket):
                while block := source.read(BLOCK):
                    conn.sendall(block)
                conn.unwrap()
            else:
                conn.sendfile(source)
        ftp.voidresp()
        remote_size = ftp.size(temporary)
        if remote_size != size:
            raise RuntimeError(f"{temporary}: {remote_size} bytes on the server, {size} sent")
        ftp.rename(temporary, f"{folder}/{name}")

    def close(self) -> None:
        try:
            self.ftp.quit()
        finally:
            self.ftp.close()


class _ReusingFTPS(ftplib.FTP_TLS):
    """FTPS whose data connections resume the control connection's TLS session (vsftpd requires it)."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)  # type: ignore[union-attr]
        return conn, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("protocol", choices=("sftp", "ftp", "ftps"))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("user")
    parser.add_argument("source", type=Path)
    parser.add_argument("remote", help="the remote folder the source's content goes into (it exists)")
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--key-file")
    parser.add_argument("--ca-file")
    args = parser.parse_args(argv)
    files = _files(args.source)
    folders = sorted({folder for folder, _ in files if folder})
    work: queue.SimpleQueue[tuple[str, Path] | None] = queue.SimpleQueue()
    for item in files:
        work.put(item)
    errors: list[BaseException] = []
    factory = SFTPUploader if args.protocol == "sftp" else FTPUploader

    def worker(uploader: SFTPUploader | FTPUploader) -> None:
        try:
            while (item := work.get()) is not None:
                folder, local = item
                remote_folder = f"{args.remote}/{folder}" if folder else args.remote
                uploader.upload(local, remote_folder, local.name, local.stat().st_size)
        except BaseException as exc:  # reported by main
            errors.append(exc)
        finally:
            uploader.close()

    uploaders = [factory(args) for _ in range(args.conns)]
    for folder in folders:  # before any upload: the folders of loose files
        uploaders[0].mkdir(f"{args.remote}/{folder}")
    for _ in uploaders:
        work.put(None)
    threads = [threading.Thread(target=worker, args=(u,)) for u in uploaders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        print(f"bare client: {errors[0]!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

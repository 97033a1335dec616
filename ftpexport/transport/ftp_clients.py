"""The ftplib clients FTPTransport connects with: plain FTP, explicit FTPS (AUTH TLS) and implicit
FTPS, connecting in steps that each name their phase, keeping the data socket for ``abort`` and
the time of the last reply for ``alive``, resuming the control channel's TLS session on every data
connection; and the TLS context (TLS 1.2+, certificate and host name verified, ``ca_file``).
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import select
import socket
import ssl
import sys
import time
from typing import Any

from ..errors import TLSError
from . import transcript, wire
from .base import Endpoint
from .tls_client_certs import load_client_certificate

#: seconds a TLS 1.3 control connection with a client certificate waits for the server's verdict on it
VERDICT_WAIT = 1.0


def _no_delay(conn: socket.socket) -> None:
    """Send small writes at once: the last block of a file and the TLS close_notify.

    With Nagle's algorithm the kernel holds them back until the server acknowledges what is in
    flight, and the server delays that acknowledgement (up to 40 ms on Linux) for every file.
    """
    with contextlib.suppress(OSError):  # not TCP (a test double): nothing to tune
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _note_tls(sock: socket.socket, what: str) -> None:
    """Record the TLS version and cipher of ``sock`` (and the server certificate's subject) in the transcript."""
    if transcript.current() is None or not isinstance(sock, ssl.SSLSocket):
        return
    cipher = sock.cipher()
    text = f"TLS on the {what}: {sock.version()}, cipher {cipher[0] if cipher else '?'}"
    if what == "data connection":
        text += f", session reused: {'yes' if sock.session_reused else 'no'}"
    else:
        certificate = sock.getpeercert() or {}
        subject = ", ".join("=".join(pair) for rdn in certificate.get("subject", ()) for pair in rdn)
        if subject:
            text += f"; server certificate {subject}, valid until {certificate.get('notAfter', '?')}"
    transcript.note("tls", text)


def reply_reader(sock: socket.socket, encoding: str, early: bytes = b"") -> Any:
    """The control connection's replies as text. Old DMS servers answer in their own code page
    (Latin-1, CP-1252), not UTF-8: a byte that does not decode is shown as U+FFFD instead of failing
    the connection with a ``UnicodeDecodeError`` (ftplib's own reader is strict). ``early``: bytes
    of the connection read already, read first."""
    if not early:
        return sock.makefile("r", encoding=encoding, errors="replace")
    raw = sock.makefile("rb", buffering=0)
    return io.TextIOWrapper(io.BufferedReader(_Prefixed(early, raw)), encoding=encoding, errors="replace")


class _Prefixed(io.RawIOBase):
    """``raw``, with ``prefix`` in front of it."""

    def __init__(self, prefix: bytes, raw: Any) -> None:
        super().__init__()
        self._prefix = prefix
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._raw.readinto(buffer)  # type: ignore[no-any-return]


class _DataSocketMixin:
    """Remembers the open data connection, so that ``abort()`` can cut a transfer from another thread,
    and when the server last answered, so that ``alive()`` can skip a NOOP; records every command,
    reply and data connection in the attempt's transcript (``transcript``; PASS masked).

    Connecting is split in steps, so that each failure names its phase: ``open`` (TCP), ``greet``
    (the 220 greeting; an SSH banner or an HTTP answer fails at once instead of being read as the
    start of a multi-line reply, which waited for the timeout).
    """

    data_sock: socket.socket | None = None
    #: time.monotonic() of the last reply read on the control connection
    last_reply: float = 0.0
    _greeted = False

    def open(self, host: str, port: int) -> None:
        """The TCP connection, without reading the greeting (``ftplib.FTP.connect`` in two steps)."""
        self.host, self.port = host, port  # type: ignore[attr-defined]
        sys.audit("ftplib.connect", self, host, port)
        self.sock = socket.create_connection(
            (host, port),
            self.timeout,
            source_address=self.source_address,  # type: ignore[attr-defined]
        )
        self.af = self.sock.family

    def greet(self) -> str:
        """Read the server's greeting."""
        self.file = reply_reader(self.sock, self.encoding)  # type: ignore[attr-defined]
        self.welcome = self.getresp()
        return self.welcome

    def getline(self) -> str:
        line = super().getline()  # type: ignore[misc]
        if not self._greeted:
            self._greeted = True
            error = wire.other_protocol(self.host, self.port, "FTP", line.encode())  # type: ignore[attr-defined]
            if error is not None:
                raise error
        return line

    def getresp(self) -> str:
        resp = super().getresp()  # type: ignore[misc]
        self.last_reply = time.monotonic()
        return resp

    def putcmd(self, line: str) -> None:
        transcript.note("send", transcript.ftp_command(line))
        super().putcmd(line)  # type: ignore[misc]

    def putcmds(self, *lines: str) -> None:
        """Send ``lines`` in one write, without waiting for a reply in between: the server answers
        them in order, and ``getresp`` reads each reply. One round trip instead of one per command,
        for commands that need no reply before the next one (RNFR and RNTO)."""
        data = b""
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError("an illegal newline character should not be contained")
            sys.audit("ftplib.sendcmd", self, line)
            transcript.note("send", transcript.ftp_command(line))
            data += (line + ftplib.CRLF).encode(self.encoding)  # type: ignore[attr-defined]
        self.sock.sendall(data)  # type: ignore[attr-defined]

    def getmultiline(self) -> str:
        try:
            reply: str = super().getmultiline()  # type: ignore[misc]
        except EOFError:
            transcript.note("error", "the server closed the control connection")
            raise
        except OSError as exc:
            transcript.note("error", f"no reply read: {exc.strerror or exc}")
            raise
        transcript.note("reply", reply)
        return reply

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = super().ntransfercmd(cmd, rest)  # type: ignore[misc]
        _no_delay(conn)
        self.data_sock = conn
        _note_data_connection(conn)
        return conn, size


def _note_data_connection(conn: socket.socket) -> None:
    if transcript.current() is None:
        return
    with contextlib.suppress(OSError):
        host, port = conn.getpeername()[:2]
        transcript.note("data", f"data connection to {host}:{port}")
    _note_tls(conn, "data connection")


class FTPClient(_DataSocketMixin, ftplib.FTP):
    """Plain FTP."""


class FTPSClient(_DataSocketMixin, ftplib.FTP_TLS):
    """FTP_TLS that resumes the control channel's TLS session on the data channel.

    vsftpd (``require_ssl_reuse=YES``) and others refuse a data connection that does not resume
    the session of the control connection, so a third party cannot hijack the data port.
    """

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        # Skip FTP_TLS.ntransfercmd: it wraps the data socket without the session.
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 (TLS is added below)
        _no_delay(conn)  # before the handshake, which is small writes too
        if self._prot_p:
            session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        self.data_sock = conn
        _note_data_connection(conn)
        return conn, size

    #: a client certificate is sent (``tls_client_certs``): wait for the server's verdict on it
    client_certificate = False

    def auth(self) -> str:
        try:
            resp: str = super().auth()
            early = self._certificate_verdict() if self.client_certificate else b""
        except ssl.SSLError as exc:
            transcript.note("error", f"TLS handshake: {getattr(exc, 'verify_message', None) or exc.reason or exc}")
            raise
        self.file = reply_reader(self.sock, self.encoding, early)  # ftplib's, over TLS now, would not replace
        _note_tls(self.sock, "control connection")
        return resp

    def _certificate_verdict(self) -> bytes:
        """Read what the server says right after the handshake, before the first command; returns
        the bytes of a reply it sent meanwhile (none, normally).

        In TLS 1.3 the server judges the client certificate after the handshake has ended for the
        client: it sends its session tickets if it accepts it, an alert (then closes) if not. Read
        now, a refusal raises its ``SSLError`` with the alert (``UNKNOWN_CA``...). Otherwise the
        first command could be written into the closed connection and fail as a bare EOF, the alert
        unread. TLS 1.2 judges it in the handshake: nothing to wait for. A TLS 1.3 server that sends
        no tickets is waited for ``VERDICT_WAIT`` seconds at most.
        """
        sock = self.sock
        if not isinstance(sock, ssl.SSLSocket) or sock.version() != "TLSv1.3":
            return b""
        if not select.select([sock], [], [], min(VERDICT_WAIT, self.timeout))[0]:
            return b""
        sock.setblocking(False)
        try:
            return sock.recv(4096)  # the tickets are taken in passing; b"" when the server closed
        except ssl.SSLWantReadError:
            return b""  # tickets only: accepted
        finally:
            sock.settimeout(self.timeout)


#: TLS errors of a handshake answered by something that is not TLS at all
_NOT_TLS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG",
            "HTTP_REQUEST", "UNEXPECTED_RECORD"}  # fmt: skip


class ImplicitFTPSClient(FTPSClient):
    """FTPS where the control connection speaks TLS from the first byte (usually port 990)."""

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        if timeout != -999:
            self.timeout = timeout
        if source_address is not None:
            self.source_address = source_address
        self.open(host or self.host, port if port > 0 else self.port)
        self.secure()
        return self.greet()

    def secure(self) -> None:
        """The TLS handshake on the new connection, before the greeting.

        A server that answers it with something else than TLS (an SSH banner, an FTP greeting) is
        asked again on a new connection what it says first, to tell the operator what it speaks.
        """
        try:
            self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)
            _note_tls(self.sock, "control connection")
        except ssl.SSLCertVerificationError as exc:
            transcript.note("error", f"TLS handshake: {exc.verify_message or exc}")
            raise
        except ssl.SSLError as exc:
            if exc.reason in _NOT_TLS:
                first = wire.first_bytes(self.host, self.port, min(self.timeout, wire.SNIFF_TIMEOUT))
                # a failed TLS handshake, whose reason is now known
                error = wire.other_protocol(self.host, self.port, "FTPS", first, TLSError)
                if error is not None:
                    raise error from exc
            raise


def tls_context(endpoint: Endpoint) -> ssl.SSLContext:
    """A client TLS context: TLS 1.2+, certificate and host name verified, ``ca_file`` if set, the
    client certificate if the destination has one (``tls_client_certs``)."""
    try:
        context = ssl.create_default_context(cafile=str(endpoint.ca_file) if endpoint.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(
            f"cannot load ca_file {endpoint.ca_file}: {exc.strerror or exc}",
            destination=endpoint.display,
            hint="ca_file must be a PEM file holding the CA certificate that signed the server certificate",
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_client_certificate(context, endpoint)
    return context

"""FTP, explicit FTPS (AUTH TLS) and implicit FTPS transports, built on ftplib.

FTPS verifies the server certificate and host name (system CAs, or ``Endpoint.ca_file``), requires
TLS 1.2 or later, protects the data channel (``PROT P``) and resumes the control channel's TLS
session on every data connection, which servers such as vsftpd (``require_ssl_reuse=YES``) demand.
"""

from __future__ import annotations

import contextlib
import ftplib
import logging
import posixpath
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from ..errors import PermanentError, TLSError, TransientError
from .base import CLEANUP_TIMEOUT, Capabilities, Endpoint, Transport, path_prefixes
from .capabilities import ServerCapabilities, feat_lines
from .ftp_clients import FTPClient, FTPSClient, ImplicitFTPSClient, tls_context
from .ftp_data import send_stream
from .ftp_errors import map_errors, reply_code
from .ftp_rename import FTPRenames
from .transcript import connecting

log = logging.getLogger(__name__)

#: a connection that answered less than this many seconds ago, and has nothing unread on its
#: control channel (a closing server leaves an EOF or a 421 there), is reused without a NOOP
ALIVE_WITHOUT_NOOP = 5.0

# Replies that mean "this command is not implemented" (RFC 959): the server cannot tell us a size.
_NOT_IMPLEMENTED = ("500", "502", "504")


def _secret(endpoint: Endpoint) -> str:
    return endpoint.password.get_secret_value() if endpoint.password else ""


class FTPTransport(FTPRenames, Transport):
    """A connection to an FTP or FTPS server (passive, binary).

    Commands per file: PASV, STOR, SIZE (the size check), RNFR and RNTO. ``TYPE I`` is sent once
    per connection (ftplib's ``storbinary`` would send it before every file), and the folders made
    or seen on this connection are remembered (``forget_directories`` clears that); a STOR into a
    remembered folder that the server answers with 550 forgets them, makes the folder again and
    sends the STOR once more, since the DMS may have deleted the folder in between.
    """

    #: the folder cache stays valid from one job to the next (``ConnectionPool`` keeps it): a STOR
    #: into a cached folder removed meanwhile makes it again, so a stale cache never fails a delivery.
    #: No quick liveness: a connection the server cut shows only when asked (NOOP)
    capabilities = Capabilities(keeps_directories=True)

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self._ftp: ftplib.FTP | None = None
        #: the login folder (PWD), asked once per connection, to come back to after a CWD
        self._home: str | None = None
        #: False while the control connection may hold a reply not read yet (a transfer that
        #: failed on the network): then nothing more is asked on it, see ``usable_after_error``
        self._in_sync = True

    @property
    def ftp(self) -> ftplib.FTP:
        if self._ftp is None:
            raise TransientError("not connected", destination=self.endpoint.display)
        return self._ftp

    def connect(self) -> None:
        """Connect, secure the control and data channels (FTPS) and log in."""
        endpoint = self.endpoint
        if endpoint.scheme == "ftp":
            # Plain FTP is an explicit opt-in of the rule file (allow_plain_ftp), checked when rules load.
            ftp: ftplib.FTP = FTPClient(timeout=endpoint.timeout)
        elif endpoint.scheme == "ftps":
            ftp = FTPSClient(context=tls_context(endpoint), timeout=endpoint.timeout)
            ftp.client_certificate = endpoint.client_cert is not None
        elif endpoint.scheme == "ftps+implicit":
            ftp = ImplicitFTPSClient(context=tls_context(endpoint), timeout=endpoint.timeout)
        else:
            raise PermanentError(f"FTPTransport cannot speak {endpoint.scheme}", destination=endpoint.display)
        self._dirs.clear()
        self._home = None
        self._in_sync = True
        connecting(endpoint)
        try:
            with map_errors(endpoint, phase="connect"):
                ftp.open(endpoint.host, endpoint.port)  # type: ignore[attr-defined]
            if isinstance(ftp, ImplicitFTPSClient):
                with map_errors(endpoint, phase="tls"):
                    ftp.secure()
            with map_errors(endpoint, phase="greeting"):
                ftp.greet()  # type: ignore[attr-defined]
            if endpoint.scheme == "ftps":
                with map_errors(endpoint, phase="tls"):
                    self._auth_tls(ftp)  # type: ignore[arg-type]
            with map_errors(endpoint, login=True, phase="login"):
                # The only place the password is revealed: straight into the login call.
                ftp.login(endpoint.username, _secret(endpoint))
            with map_errors(endpoint, phase="login"):
                if isinstance(ftp, ftplib.FTP_TLS):
                    ftp.prot_p()
                ftp.set_pasv(endpoint.passive)
                # Binary for the whole connection; put() uses transfercmd, which does not send TYPE again.
                ftp.voidcmd("TYPE I")
        except BaseException:
            ftp.close()
            raise
        self._ftp = ftp
        log.debug("connected", extra={"destination": endpoint.display})

    def _auth_tls(self, ftp: ftplib.FTP_TLS) -> None:
        try:
            ftp.auth()
        except ftplib.error_perm as exc:
            raise TLSError(
                f"the server does not support explicit FTPS (AUTH TLS): {str(exc).strip()}",
                destination=self.endpoint.display,
                hint="use ftps+implicit:// for implicit FTPS (often port 990)",
            ) from exc

    def close(self) -> None:
        """Send QUIT and close; never raises."""
        ftp, self._ftp = self._ftp, None
        if ftp is None:
            return
        try:
            ftp.quit()
        except Exception as exc:  # the connection may be dead already; closing is all we want
            log.debug("QUIT failed: %r", exc)
        finally:
            ftp.close()

    def alive(self) -> bool:
        """NOOP answered with 2xx; skipped when the server answered a moment ago and sent nothing since.

        A server that closes the connection (idle timeout, shutdown, 421) leaves an EOF or a reply
        to read on the control channel; then, or after ``ALIVE_WITHOUT_NOOP`` seconds, NOOP decides.
        """
        ftp = self._ftp
        if ftp is None:
            return False
        if time.monotonic() - getattr(ftp, "last_reply", 0.0) < ALIVE_WITHOUT_NOOP and not self._unread(ftp):
            return True
        try:
            ftp.voidcmd("NOOP")
        except (ftplib.Error, OSError, EOFError) as exc:
            log.debug("pooled connection is dead: %r", exc, extra={"destination": self.endpoint.display})
            return False
        return True

    @staticmethod
    def _unread(ftp: ftplib.FTP) -> bool:
        """True when the control connection has something to read (or is closed) while we expect nothing."""
        sock = ftp.sock
        if sock is None:
            return True
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        try:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):  # closed socket
            return True

    def abort(self) -> None:
        """Shut down the data and control sockets; the blocked call fails with an OSError."""
        ftp = self._ftp
        if ftp is None:
            return
        for sock in (getattr(ftp, "data_sock", None), ftp.sock):
            if sock is None:
                continue
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its missing parents; folders known on this connection cost nothing.

        The deepest missing folder is made first: usually its parent exists (a new folder per
        record under a fixed one), so one MKD does. Else one MKD per missing component, top down.
        """
        prefixes = path_prefixes(path)
        missing = [prefix for prefix in prefixes if prefix not in self._dirs]
        if not missing:
            return
        if len(missing) > 1 and self._mkd(missing[-1], strict=False):
            self._dirs.update(prefixes)
            return
        for prefix in missing:
            self._mkd(prefix, strict=True)
            self._dirs.add(prefix)

    def _mkd(self, path: str, *, strict: bool) -> bool:
        """MKD ``path``; True when it was made or is a folder already, else False (or the MKD error if ``strict``)."""
        with map_errors(self.endpoint, path, phase="folder"):
            try:
                self.ftp.mkd(path)
            except ftplib.error_perm:
                # Usually "exists already"; servers word it differently, so check it is a directory.
                if self._is_dir(path):
                    return True
                if strict:
                    raise
                return False
        return True

    def _is_dir(self, path: str) -> bool:
        ftp = self.ftp
        if self._home is None:
            self._home = ftp.pwd()
        try:
            ftp.cwd(path)
        except ftplib.error_perm:
            return False
        ftp.cwd(self._home)
        return True

    def _known_folder(self, path: str) -> bool:
        """True when the folder of file ``path`` was made or seen on this connection."""
        prefixes = path_prefixes(posixpath.dirname(path))
        return bool(prefixes) and prefixes[-1] in self._dirs

    def learn(self) -> ServerCapabilities:
        """The greeting and FEAT (one round trip); a server without FEAT leaves the features unknown."""
        # the first line only: Pure-FTPd's next lines say the time and the user count, which change
        banner = (self.ftp.welcome or "").strip().splitlines()
        learned = ServerCapabilities(protocol="ftp", banner=banner[0] if banner else None)
        with map_errors(self.endpoint, phase="login"):
            try:
                learned.learned_from_feat(feat_lines(self.ftp.sendcmd("FEAT")))
            except ftplib.error_perm as exc:
                log.debug("the server does not answer FEAT: %s", exc, extra={"destination": self.endpoint.display})
        self.known = self.known.merged(learned)
        return learned

    def mkdir_existing_fails(self, path: str) -> bool | None:
        """MKD of the existing folder ``path``: True when the server refuses it."""
        with map_errors(self.endpoint, path, phase="folder"):
            try:
                self.ftp.mkd(path)
            except ftplib.error_perm:
                return True
        return False

    def size(self, path: str) -> int | None:
        """SIZE in binary mode; None for a missing file (550) or a server without SIZE (not asked
        again on a server known not to have it, see ``known.size``)."""
        if self.known.size is False:
            return None
        with map_errors(self.endpoint, path, phase="size"):
            try:
                size = self.ftp.size(path)
            except ftplib.error_perm as exc:
                if reply_code(exc) == "550":
                    return None
                if reply_code(exc) in _NOT_IMPLEMENTED:
                    log.info("the server does not implement SIZE: sizes are not checked on this server",
                             extra={"destination": self.endpoint.display, "remote_path": path})  # fmt: skip
                    self.known.size = False
                    return None
                raise
        self.known.size = True
        return size

    def put(self, stream: BinaryIO, path: str, callback: Callable[[int], None] | None = None) -> int:
        """STOR ``stream`` to ``path`` in 256 KiB blocks; return the bytes sent.

        The connection is in binary mode since ``connect``. A real file goes out with ``sendfile``
        on plain FTP, else through one reused buffer. A 550 to the STOR into a folder this
        connection made or saw means the folder may have been deleted since: it is made again and
        the STOR sent once more (nothing was read from ``stream`` yet).
        """
        ftp = self.ftp
        self._in_sync = False
        with map_errors(self.endpoint, path, phase="transfer"):
            try:
                try:
                    conn = ftp.transfercmd(f"STOR {path}")
                except ftplib.error_perm as exc:
                    if reply_code(exc) != "550" or not self._known_folder(path):
                        raise
                    folder = posixpath.dirname(path)
                    log.info(
                        "the server refused a file in a folder made before; making the folder again",
                        extra={"destination": self.endpoint.display, "remote_path": path},
                    )
                    self.forget_directories()
                    self.makedirs(folder)
                    conn = ftp.transfercmd(f"STOR {path}")
                try:
                    with conn:
                        sent = send_stream(conn, stream, callback)
                        if isinstance(conn, ssl.SSLSocket):
                            conn.unwrap()  # close_notify: the server knows the file is complete
                except OSError as exc:
                    self._reply_after_broken_transfer(ftp, exc)
                    raise
                finally:
                    if getattr(ftp, "data_sock", None) is conn:
                        ftp.data_sock = None  # type: ignore[attr-defined]
                ftp.voidresp()
            except (ftplib.error_temp, ftplib.error_perm):
                self._in_sync = True  # a reply was read: the conversation goes on
                raise
        self._in_sync = True
        return sent

    def _reply_after_broken_transfer(self, ftp: ftplib.FTP, exc: OSError) -> None:
        """The data connection broke while sending: raise the server's reply if it says why.

        A server that refuses the rest of a file (552 quota exceeded, 452 disk full, 426) closes
        the data connection, which fails the send here, and answers on the control connection. That
        reply is the real error; it is read within a short time. None came: ``exc`` stands, and the
        control connection may still get one, so it is not used again.
        """
        sock = ftp.sock
        if sock is None:
            return
        try:
            sock.settimeout(min(self.endpoint.timeout, CLEANUP_TIMEOUT))
            ftp.voidresp()
        except (ftplib.error_temp, ftplib.error_perm) as reply:
            raise reply from exc
        except (ftplib.Error, OSError, EOFError) as other:
            log.debug("no reply after the broken transfer: %r", other, extra={"destination": self.endpoint.display})
            return
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(self.endpoint.timeout)
        self._in_sync = True  # the server said the transfer went well: ``exc`` stands, the connection is fine

    def usable_after_error(self) -> bool:
        """The control connection is open and no reply is pending on it."""
        return self._ftp is not None and self._in_sync and not self._unread(self._ftp)

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Each reply within ``seconds`` while inside (a cleanup must not wait the whole timeout)."""
        sock = self._ftp.sock if self._ftp is not None else None
        if sock is None:
            yield
            return
        sock.settimeout(seconds)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(self.endpoint.timeout)

    def remove(self, path: str) -> None:
        """DELE ``path``; a missing file is fine."""
        with map_errors(self.endpoint, path, phase="delete"):
            try:
                self.ftp.delete(path)
            except ftplib.error_perm as exc:
                if reply_code(exc) == "550" and self.size(path) is None:
                    return
                raise

"""FTP errors as ftpexport errors: the server's replies (RFC 959 codes, explained), TLS failures
and network failures, naming the destination, the path and, for network failures, ``host:port``
and the phase.
"""

from __future__ import annotations

import ftplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import (
    TOO_MANY_HINT,
    AuthenticationError,
    PermanentError,
    TLSError,
    TooManySessionsError,
    TransientError,
    TransportError,
)
from . import wire
from .base import Endpoint
from .tls_client_certs import client_certificate_refused

TLS_HINT = "set ca_file to the CA that signed the server certificate"

_NO_GREETING_HINT = (
    "an FTP server greets at once: for implicit FTPS (often port 990) use ftps+implicit://, else check the port"
)

#: what a server says when it takes no more sessions, with a 421 or a 530 (vsftpd, pyftpdlib and
#: Pure-FTPd "too many connections", ProFTPD "the maximum number of clients", "are already logged in")
_TOO_MANY = ("too many", "maximum number", "already connected", "already logged in")

# 452 insufficient storage, 552 exceeded storage allocation
_OUT_OF_SPACE = ("452", "552")
_SPACE_HINT = "free disk space or raise the quota on the server; the delivery is retried, then parked as failed"

# What the usual replies mean (RFC 959), added to the server's own text, which is often terse.
_MEANINGS = {
    "421": "the server is closing the connection: too many connections, or shutting down",
    "425": "cannot open the data connection",
    "426": "the data connection was closed during the transfer",
    "450": "the file is busy or unavailable",
    "451": "the server failed while processing the request",
    "530": "not logged in",
    "550": "no such file or folder, or permission denied",
    "553": "the file name is not allowed",
}


def _too_many_sessions(reply: str) -> bool:
    """The (lower-case) reply says that the server takes no more sessions."""
    return any(words in reply for words in _TOO_MANY)


def _sessions_refused(reply: str, where: dict[str, str | None]) -> TooManySessionsError:
    return TooManySessionsError(f"the server refused one more session: {reply}", **where, hint=TOO_MANY_HINT)


def reply_code(exc: ftplib.Error) -> str:
    """The three-digit code of an ftplib error's reply."""
    return str(exc)[:3]


@contextmanager
def map_errors(endpoint: Endpoint, path: str | None = None, *, phase: str, login: bool = False) -> Iterator[None]:
    """Turn ftplib, socket and ssl errors into ftpexport errors naming the destination and path.

    Network failures name ``host:port`` and ``phase`` (see ``wire.PHASES``).
    """
    where = {"destination": endpoint.display, "path": path}
    host, port = endpoint.host, endpoint.port
    try:
        yield
    except TransportError as exc:
        exc.located(**where)
        raise
    except ftplib.error_temp as exc:
        # 4xx: "try again later" (421 too many users / shutting down, 425/426 data connection, 450/451)
        reply = str(exc).strip()
        meaning = _MEANINGS.get(reply_code(exc))
        if phase in ("greeting", "login") and _too_many_sessions(reply.lower()):
            raise _sessions_refused(reply, where) from exc
        if reply_code(exc) in _OUT_OF_SPACE:
            raise TransientError(f"the server is out of space: {reply}", **where, hint=_SPACE_HINT) from exc
        raise TransientError(f"the server answered {reply}" + (f" ({meaning})" if meaning else ""), **where) from exc
    except ftplib.error_perm as exc:
        reply = str(exc).strip()
        code = reply_code(exc)
        if login and code == "530" and _too_many_sessions(reply.lower()):
            raise _sessions_refused(reply, where) from exc
        if login and code in ("530", "532"):
            raise AuthenticationError(
                f"login refused: {reply}",
                **where,
                hint="check the user name and password",
            ) from exc
        if code in _OUT_OF_SPACE:
            # 552 "exceeded storage allocation": space can be freed, so it is retried like a 4xx.
            raise TransientError(f"the server is out of space: {reply}", **where, hint=_SPACE_HINT) from exc
        meaning = _MEANINGS.get(code)
        raise PermanentError(f"the server refused: {reply}" + (f" ({meaning})" if meaning else ""), **where) from exc
    except (ftplib.error_reply, ftplib.error_proto) as exc:
        # An unexpected or garbled reply: usually a connection cut half way through a reply.
        raise TransientError(f"unexpected reply from the server: {str(exc).strip()}", **where) from exc
    except ssl.SSLCertVerificationError as exc:
        raise TLSError(
            f"the server certificate is not trusted: {exc.verify_message or exc.reason}",
            **where,
            hint=f"{TLS_HINT}, and use the host name the certificate was issued for",
        ) from exc
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
        raise TransientError(wire.closed(host, port, phase, "TLS connection"), **where) from exc
    except ssl.SSLError as exc:
        refused = client_certificate_refused(exc, endpoint)
        if refused is not None:
            raise TLSError(refused[0], **where, hint=refused[1]) from exc
        raise TLSError(
            f"TLS failed: {exc.reason or exc}",
            **where,
            hint="the server must offer TLS 1.2+ on this port; check the scheme: ftps or ftps+implicit",
        ) from exc
    except TimeoutError as exc:
        hint = _NO_GREETING_HINT if phase == "greeting" else None
        raise TransientError(wire.timed_out(host, port, phase, endpoint.timeout), **where, hint=hint) from exc
    except socket.gaierror as exc:
        raise TransientError(f"cannot resolve host {endpoint.host}: {exc.strerror}", **where) from exc
    except EOFError as exc:
        raise TransientError(wire.closed(host, port, phase), **where) from exc
    except OSError as exc:
        raise TransientError(wire.network_error(host, port, phase, exc), **where) from exc

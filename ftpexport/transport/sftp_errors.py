"""SFTP errors as ftpexport errors: what paramiko, the SFTP server and the socket raised, read as
a refusal (permanent), a cut or a timeout (transient) or a login refused, naming the destination,
the path and, for network failures, ``host:port`` and the phase.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import paramiko

from ..errors import AuthenticationError, PermanentError, TransientError, TransportError
from . import wire
from .base import Endpoint


@contextmanager
def map_errors(endpoint: Endpoint, path: str | None = None, *, phase: str, writing: bool = False) -> Iterator[None]:
    """Turn paramiko, SFTP and socket errors into ftpexport errors naming the destination and path.

    Network failures name ``host:port`` and ``phase`` (see ``wire.PHASES``).
    """
    where = {"destination": endpoint.display, "path": path}
    host, port = endpoint.host, endpoint.port
    try:
        yield
    except TransportError as exc:
        exc.located(**where)
        raise
    except paramiko.AuthenticationException as exc:
        # paramiko's messages name the allowed methods at most, never the credentials.
        raise AuthenticationError(
            f"login refused: {exc}", **where, hint="check the user name and the password or key"
        ) from exc
    except paramiko.SSHException as exc:
        # paramiko's thread wraps what went wrong (e.g. "Error reading SSH protocol banner"): the
        # wrapped exception says more
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, TransportError):  # another protocol on the port (wire.SniffingSocket)
            raise cause.located(**where) from None
        if isinstance(cause, TimeoutError):
            raise TransientError(wire.timed_out(host, port, phase, endpoint.timeout), **where) from exc
        if isinstance(cause, EOFError):
            raise TransientError(wire.closed(host, port, phase), **where) from exc
        if isinstance(cause, OSError):
            raise TransientError(wire.network_error(host, port, phase, cause), **where) from exc
        raise TransientError(f"SSH error with {wire.address(host, port)} {wire.when(phase)}: {exc}", **where) from exc
    except TimeoutError as exc:
        raise TransientError(wire.timed_out(host, port, phase, endpoint.timeout), **where) from exc
    except EOFError as exc:
        raise TransientError(wire.closed(host, port, phase), **where) from exc
    except ConnectionError as exc:
        raise TransientError(wire.network_error(host, port, phase, exc), **where) from exc
    except socket.gaierror as exc:
        raise TransientError(f"cannot resolve host {endpoint.host}: {exc.strerror}", **where) from exc
    except OSError as exc:
        # paramiko raises IOError(errno, server text) for SFTP status codes, IOError(text) otherwise.
        text = exc.strerror or str(exc)
        if exc.errno is None and text == "Socket is closed":
            # paramiko's Channel.send on a channel the server (or abort()) closed meanwhile: a cut,
            # not an answer of the server
            raise TransientError(wire.closed(host, port, phase), **where) from exc
        if exc.errno == errno.ENOENT:
            raise PermanentError(f"no such file or directory: {text}", **where) from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PermanentError(f"permission denied: {text}", **where) from exc
        if exc.errno is None and writing:
            # OpenSSH reports ENOSPC and EDQUOT as a bare SSH_FX_FAILURE ("Failure").
            raise TransientError(
                f"the server could not write the file: {text}",
                **where,
                hint="usually the disk is full or a quota is exceeded on the server; the delivery is retried, "
                "then parked as failed",
            ) from exc
        if exc.errno is None:
            raise PermanentError(f"the server refused: {text}", **where) from exc
        raise TransientError(wire.network_error(host, port, phase, exc), **where) from exc

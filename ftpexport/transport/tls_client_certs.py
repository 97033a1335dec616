"""FTPS client certificates (mutual TLS): the destination's certificate and key loaded into the
client TLS context, for servers that require one (vsftpd ``require_cert=YES``, ProFTPD
``TLSVerifyClient on``, IIS "require client certificates").

The certificate is a PEM file (``client_cert``, the chain after it if the server needs it). The key
is either a PEM file (``client_key_file``) or the PEM text from the secrets store (``client_key``),
optionally encrypted, with its passphrase from the store (``client_key_passphrase``). A key from
the store never touches a disk: Python's ``ssl`` loads keys from files only, so it goes through an
anonymous memory file (``memfd_create``) that exists for the duration of the load.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator

from ..errors import ConfigError
from .base import Endpoint

#: what to do when the certificate or the key cannot be used
_HINT = (
    "client_cert must be a PEM certificate (its chain after it), client_key_file / client_key the PEM"
    " private key that belongs to it, and client_key_passphrase its passphrase if it is encrypted"
)


def load_client_certificate(context: ssl.SSLContext, endpoint: Endpoint) -> None:
    """Load the endpoint's client certificate and key into ``context``; nothing when it has none."""
    if endpoint.client_cert is None:
        return
    passphrase = endpoint.client_key_passphrase.get_secret_value() if endpoint.client_key_passphrase else None
    where = f"client_cert {endpoint.client_cert}"
    try:
        if endpoint.client_key is not None:
            with _memory_file(endpoint.client_key.get_secret_value().encode()) as key_path:
                context.load_cert_chain(endpoint.client_cert, key_path, password=passphrase or "")
        else:
            key = endpoint.client_key_file
            where += f", client_key_file {key}" if key else ""
            context.load_cert_chain(endpoint.client_cert, key, password=passphrase or "")
    except ssl.SSLError as exc:  # before OSError: it is one
        reason = _reason(exc, encrypted=_encrypted(endpoint))
        raise ConfigError(f"{endpoint.display}: {where}: {reason}", hint=_HINT) from exc
    except FileNotFoundError as exc:
        raise ConfigError(f"{endpoint.display}: {where}: file not found: {exc.filename}", hint=_HINT) from exc
    except OSError as exc:
        raise ConfigError(f"{endpoint.display}: {where}: cannot read it: {exc.strerror or exc}", hint=_HINT) from exc


def _reason(exc: ssl.SSLError, *, encrypted: bool) -> str:
    """What was wrong with the certificate or the key, in words (never the key itself)."""
    if "KEY_VALUES_MISMATCH" in f"{exc.reason or ''} {exc}".upper():
        return "the private key does not belong to the certificate"
    if encrypted:
        return "cannot decrypt the private key (wrong or missing client_key_passphrase)"
    return f"cannot load the certificate and key ({exc.reason or 'not PEM'})"


def _encrypted(endpoint: Endpoint) -> bool:
    """True when the client key is an encrypted PEM key (``ENCRYPTED PRIVATE KEY``, ``Proc-Type: 4,ENCRYPTED``)."""
    if endpoint.client_key is not None:
        return "ENCRYPTED" in endpoint.client_key.get_secret_value()
    path = endpoint.client_key_file or endpoint.client_cert
    try:
        return path is not None and b"ENCRYPTED" in path.read_bytes()
    except OSError:
        return False


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path to ``data`` held in memory only (Linux ``memfd_create``), valid inside the block."""
    fd = os.memfd_create("ftpexport-client-key", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)



#: TLS alerts of a server that wants a client certificate (TLS 1.3 says so; TLS 1.2 fails the handshake)
_REQUIRED = ("CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE", "SSLV3_ALERT_HANDSHAKE_FAILURE")
#: TLS alerts of a server that did not accept the certificate it was given
_REFUSED = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED",
            "UNSUPPORTED_CERTIFICATE", "CERTIFICATE_UNKNOWN", "ACCESS_DENIED")  # fmt: skip


def client_certificate_refused(exc: ssl.SSLError, endpoint: Endpoint) -> tuple[str, str] | None:
    """(message, hint) when a TLS failure says the server wants a (different) client certificate."""
    reason = f"{exc.reason or ''} {exc}".upper()
    if endpoint.client_cert is None and any(alert in reason for alert in _REQUIRED):
        return (
            f"the server requires a client certificate (TLS: {exc.reason})",
            "set client_cert and client_key_file (or client_key from the secrets store) on the destination;"
            " the DMS administrator says which CA the certificate must come from",
        )
    if endpoint.client_cert is not None and any(alert in reason for alert in _REFUSED + _REQUIRED):
        return (
            f"the server refused the client certificate {endpoint.client_cert} (TLS: {exc.reason})",
            "it must be signed by a CA the server trusts, valid today and not revoked: ask the DMS administrator",
        )
    return None

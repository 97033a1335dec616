"""The SSH key ftpexport logs in with: ``key_file`` or ``private_key`` (OpenSSH or PEM; ed25519,
ecdsa or rsa), decrypted with ``key_passphrase``; a key that cannot be loaded is named, never quoted.
"""

from __future__ import annotations

import io
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..errors import AuthenticationError
from .base import Endpoint


def _load_private_key(data: bytes, passphrase: str | None) -> paramiko.PKey:
    """A paramiko key from private key text (OpenSSH or PEM), like ``PKey.from_path`` does for files."""
    password = passphrase.encode() if passphrase is not None else None
    try:
        loaded = serialization.load_ssh_private_key(data, password=password)
    except ValueError:
        loaded = serialization.load_pem_private_key(data, password=password)
    key_class: type[paramiko.PKey]
    if isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise paramiko.SSHException(f"unsupported private key type {type(loaded).__name__}")
    return key_class.from_private_key(io.StringIO(data.decode()), password=passphrase)


def private_key(endpoint: Endpoint) -> paramiko.PKey | None:
    """The login key of ``endpoint`` (``key_file`` or ``private_key``), None when it has none."""
    passphrase = endpoint.key_passphrase.get_secret_value() if endpoint.key_passphrase else None
    try:
        if endpoint.key_file is not None:
            return paramiko.PKey.from_path(Path(endpoint.key_file), password=passphrase)
        if endpoint.private_key is not None:
            return _load_private_key(endpoint.private_key.get_secret_value().encode(), passphrase)
    except (OSError, ValueError, TypeError, paramiko.SSHException, paramiko.UnknownKeyType) as exc:
        # Name the file and the kind of failure only: exception texts may quote key material.
        source = f"key_file {endpoint.key_file}" if endpoint.key_file else "private_key"
        text = str(exc).lower()
        if isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        elif isinstance(exc, paramiko.PasswordRequiredException) or any(
            word in text for word in ("password", "encrypted", "decrypt")
        ):
            reason = "wrong or missing key_passphrase"
        else:
            reason = f"unreadable key ({type(exc).__name__})"

        raise AuthenticationError(
            f"cannot load {source}: {reason}",
            hint="it must be an OpenSSH or PEM private key (ed25519, ecdsa or rsa)",
        ) from None
    return None

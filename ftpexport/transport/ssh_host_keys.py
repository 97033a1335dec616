"""SSH host keys: the keys a destination pins (``host_key`` lines, ``known_hosts``), the server's
key checked against them, and their fingerprints and public key lines as messages show them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

import paramiko

from ..errors import HostKeyError
from .base import Endpoint

# Host key algorithms paramiko may negotiate for a key of each type (RSA keys sign with SHA-2).
_ALGORITHMS_FOR_KEY_TYPE: dict[str, tuple[str, ...]] = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}

REPIN_WARNING = (
    "the server key changed: this can be a reinstalled server or an attack; confirm the new "
    "fingerprint with the server's operator before pinning it"
)


def fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH SHA256 fingerprint of a public key: ``SHA256:`` + unpadded base64."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def public_key_line(key: paramiko.PKey) -> str:
    """The OpenSSH public key line of a key, as ``host_key`` expects it."""
    return f"{key.get_name()} {key.get_base64()}"


def parse_host_key(line: str) -> tuple[str, bytes]:
    """``(type, blob)`` of an OpenSSH public key line; a leading host field (known_hosts) is allowed."""
    fields = line.split()
    # "host ssh-ed25519 AAAA..." (ssh-keyscan output) as well as "ssh-ed25519 AAAA... comment"
    for i in range(min(2, len(fields) - 1)):
        key_type, data = fields[i], fields[i + 1]
        try:
            blob = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            continue
        if blob[4 : 4 + len(key_type.encode())] == key_type.encode():
            return key_type, blob
    raise ValueError("not an OpenSSH public key line (expected 'ssh-ed25519 AAAA...')")


def pinned_keys(endpoint: Endpoint) -> set[tuple[str, bytes]]:
    """The accepted ``(type, blob)`` pairs from ``host_keys`` and ``known_hosts``."""
    pinned: set[tuple[str, bytes]] = set()
    for line in endpoint.host_keys:
        try:
            pinned.add(parse_host_key(line))
        except ValueError as exc:
            raise HostKeyError(f"host_key {line[:40]!r}...: {exc}", destination=endpoint.display) from exc
    if endpoint.known_hosts is not None:
        try:
            known = paramiko.HostKeys(str(endpoint.known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise HostKeyError(
                f"cannot read known_hosts file {endpoint.known_hosts}: {reason}",
                destination=endpoint.display,
            ) from exc
        # OpenSSH writes "[host]:port" for ports other than 22; a bare host entry is accepted too.
        for name in (endpoint.host, f"[{endpoint.host}]:{endpoint.port}"):
            for key in (known.lookup(name) or {}).values():
                pinned.add((key.get_name(), key.asbytes()))
    return pinned


def restrict_key_types(transport: paramiko.Transport, pinned: set[tuple[str, bytes]]) -> None:
    """Negotiate only host key types we have pinned, so a server with several keys shows a pinned one."""
    if not pinned:
        return
    options = transport.get_security_options()
    wanted: list[str] = []
    for key_type, _ in sorted(pinned):
        wanted.extend(_ALGORITHMS_FOR_KEY_TYPE.get(key_type, (key_type,)))
    supported = [name for name in dict.fromkeys(wanted) if name in options.key_types]
    if supported:
        options.key_types = supported


def verify_host_key(endpoint: Endpoint, key: paramiko.PKey, pinned: set[tuple[str, bytes]]) -> None:
    """Refuse ``key`` unless it is one of the ``pinned`` keys, naming its fingerprint and what to pin."""
    offered = (key.get_name(), key.asbytes())
    if offered in pinned:
        return
    if not pinned:
        if endpoint.known_hosts is None:
            where = "in host_key or known_hosts"
        else:
            where = f"for {endpoint.host} in {endpoint.known_hosts}"
        raise HostKeyError(
            f"refusing to connect: no host key pinned {where}; the server offers "
            f"{key.get_name()} key {fingerprint(key)}",
            hint=f"after checking this fingerprint with the server's operator, pin it with "
            f'host_key: "{public_key_line(key)}"',
        )
    raise HostKeyError(
        f"the server's host key {key.get_name()} {fingerprint(key)} is not the pinned one",
        hint=REPIN_WARNING,
    )

"""The SSH key exchange under ftpexport's algorithm policy (``ssh_policy``), on paramiko.

``PolicyTransport`` remembers what the server offered, so that a failed negotiation can say which
algorithm families had nothing in common, and why the server disconnected, when it said so;
``apply_policy`` sets what we offer; ``negotiated`` and ``legacy_in_use`` tell what a finished key
exchange agreed on.
"""

from __future__ import annotations

import contextlib
from typing import Any

import paramiko

from ..errors import PermanentError
from . import ssh_policy, wire
from .base import Endpoint


class PolicyTransport(paramiko.Transport):
    """A paramiko Transport that keeps the server's algorithm lists, to explain a failed negotiation."""

    #: the server's KEXINIT as paramiko parses it (``kex_algo_list``, ``server_key_algo_list``...)
    server_offer: dict[str, Any] | None = None

    #: the server's SSH_MSG_DISCONNECT, when it sent one: (reason code, its description)
    disconnect: tuple[int, str] | None = None

    def _parse_disconnect(self, m: paramiko.Message) -> Any:
        with contextlib.suppress(Exception):  # only for the message; paramiko parses it again below
            copy = paramiko.Message(m.asbytes())
            self.disconnect = (copy.get_int(), copy.get_text())
        return super()._parse_disconnect(m)  # type: ignore[misc]

    def _parse_kex_init(self, m: paramiko.Message) -> Any:
        with contextlib.suppress(Exception):  # only for the message; paramiko parses it again below
            self.server_offer = self._really_parse_kex_init(paramiko.Message(m.asbytes()))
        return super()._parse_kex_init(m)  # type: ignore[misc]


def apply_policy(transport: paramiko.Transport, legacy: tuple[str, ...]) -> None:
    """Offer only the algorithms of ``ssh_policy``, plus the legacy ones the destination names."""
    options = transport.get_security_options()
    options.kex = ssh_policy.offered("kex", legacy, transport._kex_info)
    options.key_types = ssh_policy.offered("host_keys", legacy, transport._key_info)
    options.ciphers = ssh_policy.offered("ciphers", legacy, transport._cipher_info)
    options.digests = ssh_policy.offered("macs", legacy, transport._mac_info)
    # the signatures of our own key when logging in with one: SHA-2 only, as for host keys
    transport._preferred_pubkeys = ssh_policy.offered("host_keys", (), transport._key_info)


def mismatch_error(transport: paramiko.Transport, endpoint: Endpoint, exc: Exception) -> PermanentError:
    """The error for a key exchange with no common algorithm in some family, saying what to do."""
    offer = getattr(transport, "server_offer", None)
    where = wire.address(endpoint.host, endpoint.port)
    if offer is None:
        return PermanentError(f"the SSH key exchange with {where} failed: {exc}")
    server = {
        "kex": offer["kex_algo_list"],
        "host_keys": offer["server_key_algo_list"],
        "ciphers": [*offer["client_encrypt_algo_list"], *offer["server_encrypt_algo_list"]],
        "macs": [*offer["client_mac_algo_list"], *offer["server_mac_algo_list"]],
    }
    ours = {
        "kex": transport.preferred_kex,
        "host_keys": transport.preferred_keys,
        "ciphers": transport.preferred_ciphers,
        "macs": transport.preferred_macs,
    }
    message, hint = ssh_policy.describe_mismatch(where, server, ours)
    return PermanentError(message, hint=hint)


def negotiated(transport: paramiko.Transport) -> dict[str, str]:
    """The algorithms a finished key exchange agreed on."""
    offer = getattr(transport, "server_offer", None) or {}
    # the client's first choice that the server offers is the one agreed on (RFC 4253, 7.1)
    kex = next((name for name in transport.preferred_kex if name in offer.get("kex_algo_list", ())), None)
    names = {
        "kex": kex,
        "host_key": transport.host_key_type,
        "cipher": transport.local_cipher,
        "mac": transport.local_mac,
    }
    return {k: v for k, v in names.items() if isinstance(v, str) and v}


def legacy_in_use(algorithms: dict[str, str]) -> list[str]:
    """The legacy algorithms (``ssh_legacy_algorithms``) among those ``negotiated`` returned."""
    cipher = algorithms.get("cipher", "")
    aead = "-gcm@" in cipher or "chacha20-poly1305" in cipher  # its MAC is not used
    names = [cipher] + ([] if aead else [algorithms.get("mac", "")])
    return [name for name in names if name in ssh_policy.LEGACY]

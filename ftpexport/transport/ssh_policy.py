"""Which SSH algorithms ftpexport offers: one policy table, and the words for a failed negotiation.

By default only what current SSH hardening guides recommend is offered: AEAD or CTR ciphers,
SHA-2 MACs, key exchanges without SHA-1, host keys signed with SHA-2 or better. A destination
whose server knows nothing better names the old algorithms it needs in ``ssh_legacy_algorithms``;
exactly those are added, after the modern ones, and ``check`` and ``test-connection`` warn.

This module imports neither paramiko nor anything of ours beyond the standard library: the rule
files validate ``ssh_legacy_algorithms`` with it without loading the SSH library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: the algorithm families of an SSH key exchange, as named in messages
FAMILIES: dict[str, str] = {
    "kex": "key exchange",
    "host_keys": "host key",
    "ciphers": "cipher",
    "macs": "MAC",
}

#: what is offered by default, best first (names the SSH library does not know are left out when
#: connecting). AES-GCM leads the ciphers: one authenticated encryption per packet instead of
#: AES-CTR plus an HMAC computed apart (+15-40 % on uploads).
MODERN: dict[str, tuple[str, ...]] = {
    "kex": (
        "mlkem768x25519-sha256",
        "sntrup761x25519-sha512",
        "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group14-sha256",
    ),
    "host_keys": (
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "rsa-sha2-512",
        "rsa-sha2-256",
    ),
    "ciphers": (
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
    ),
    "macs": (
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha2-256",
        "hmac-sha2-512",
    ),
}

#: old algorithms a destination may name in ``ssh_legacy_algorithms``: name -> (family, why it is old)
LEGACY: dict[str, tuple[str, str]] = {
    "aes128-cbc": ("ciphers", "a CBC cipher"),
    "aes192-cbc": ("ciphers", "a CBC cipher"),
    "aes256-cbc": ("ciphers", "a CBC cipher"),
    "3des-cbc": ("ciphers", "a 3DES CBC cipher (64-bit blocks)"),
    "hmac-sha1": ("macs", "a SHA-1 MAC"),
    "hmac-sha1-96": ("macs", "a truncated SHA-1 MAC"),
    "hmac-md5": ("macs", "an MD5 MAC"),
    "hmac-md5-96": ("macs", "a truncated MD5 MAC"),
}

#: old algorithms the SSH library (paramiko) cannot speak at all, so naming them cannot help
UNSUPPORTED: dict[str, tuple[str, str]] = {
    "diffie-hellman-group1-sha1": ("kex", "a SHA-1 key exchange over a 1024-bit group"),
    "diffie-hellman-group14-sha1": ("kex", "a SHA-1 key exchange"),
    "diffie-hellman-group-exchange-sha1": ("kex", "a SHA-1 key exchange"),
    "ssh-rsa": ("host_keys", "RSA signed with SHA-1"),
    "ssh-dss": ("host_keys", "DSA"),
    "blowfish-cbc": ("ciphers", "a Blowfish CBC cipher"),
    "arcfour": ("ciphers", "RC4"),
    "arcfour128": ("ciphers", "RC4"),
    "arcfour256": ("ciphers", "RC4"),
    "hmac-sha1-etm@openssh.com": ("macs", "a SHA-1 MAC"),
    "hmac-md5-etm@openssh.com": ("macs", "an MD5 MAC"),
}

FIELD = "ssh_legacy_algorithms"

_PSEUDO = ("ext-info-", "kex-strict-")


def check_legacy_names(names: Iterable[str]) -> list[str]:
    """The names of ``ssh_legacy_algorithms``, each checked; raises ``ValueError`` naming the valid choices."""
    checked: list[str] = []
    for name in names:
        if name in LEGACY:
            if name not in checked:
                checked.append(name)
            continue
        if name in UNSUPPORTED:
            raise ValueError(
                f"{name} ({UNSUPPORTED[name][1]}) cannot be enabled: ftpexport's SSH library does not speak it; "
                f"the server must offer a newer one (valid choices: {', '.join(LEGACY)})"
            )
        if any(name in modern for modern in MODERN.values()):
            raise ValueError(f"{name} is offered by default: only old algorithms are listed here")
        raise ValueError(f"unknown algorithm {name!r}; valid choices: {', '.join(LEGACY)}")
    return checked


def legacy_warning(name: str) -> str:
    """Why a named legacy algorithm is a risk, for ``check`` and ``test-connection``."""
    family, why = LEGACY[name]
    return f"{FIELD} enables {name}, {why}: ask the server's operator for a modern {FAMILIES[family]}"


def offered(family: str, legacy: Iterable[str], supported: Iterable[str]) -> tuple[str, ...]:
    """The algorithms of ``family`` to offer: the modern ones, then the legacy ones named, that ``supported`` has."""
    known = set(supported)
    named = [name for name in legacy if LEGACY.get(name, ("", ""))[0] == family]
    return tuple(name for name in (*MODERN[family], *named) if name in known)


def describe_mismatch(
    where: str, server: Mapping[str, Iterable[str]], ours: Mapping[str, Iterable[str]]
) -> tuple[str, str]:
    """``(message, hint)`` for a key exchange with the server at ``where`` where some family has nothing in common.

    ``server`` and ``ours`` map a family to the names offered by each side. The message names each
    family without a common algorithm and what the server offers there; the hint says what to do.
    """
    failed: list[str] = []
    can_enable: list[str] = []
    cannot: list[str] = []
    for family, title in FAMILIES.items():
        # leave out the names that announce extensions (ext-info-s, kex-strict-s-v00@openssh.com)
        theirs = [name for name in dict.fromkeys(server.get(family, ())) if not name.startswith(_PSEUDO)]
        if not theirs or set(theirs) & set(ours.get(family, ())):
            continue
        failed.append(f"{title}: it offers only {', '.join(theirs)}")
        enable = [name for name in theirs if LEGACY.get(name, ("", ""))[0] == family]
        if enable:
            can_enable.append(enable[0])
        else:
            cannot.append(title)
    if not failed:
        return f"the SSH key exchange with {where} failed: no algorithm in common", (
            "run with -vv to see what each side offered"
        )
    message = f"no SSH algorithm in common with the server at {where}: " + "; ".join(failed)
    hints = []
    if can_enable:
        hints.append(
            f"best, have the server offer a modern algorithm; else, knowing the risk, add "
            f"{FIELD}: [{', '.join(can_enable)}] to this destination"
        )
    if cannot:
        hints.append(
            f"ftpexport cannot speak any {' or '.join(cannot)} algorithm the server offers: the server must "
            "enable a modern one"
        )
    return message, "; ".join(hints)

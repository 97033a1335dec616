"""The SSH algorithm policy: what is offered, ``ssh_legacy_algorithms`` in rule files, and the words
for a failed negotiation. The wire and real servers: ``tests/integration/test_ssh_algorithms.py``."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

from ftpexport.rules import SFTPDestination, read_rule_file, rule_warnings
from ftpexport.transport import ssh_policy
from ftpexport.transport.ssh_negotiation import apply_policy, legacy_in_use

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

BANNED_CIPHER = ("-cbc", "arcfour", "blowfish", "3des")
BANNED_MAC = ("md5", "sha1")


def offered(legacy: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """The lists a paramiko Transport offers once the policy is applied (no connection is made)."""
    ours, theirs = socket.socketpair()
    try:
        transport = paramiko.Transport(ours)
        apply_policy(transport, legacy)
        return {
            "ciphers": transport.preferred_ciphers,
            "macs": transport.preferred_macs,
            "kex": transport.preferred_kex,
            "host_keys": transport.preferred_keys,
            "pubkeys": transport.preferred_pubkeys,
        }
    finally:
        ours.close()
        theirs.close()


def test_the_offered_lists_contain_none_of_the_banned_algorithms() -> None:
    lists = offered()

    assert lists["ciphers"] and not [c for c in lists["ciphers"] if any(b in c for b in BANNED_CIPHER)]
    assert lists["macs"] and all(m.startswith("hmac-sha2-") for m in lists["macs"])
    assert lists["kex"] and not [k for k in lists["kex"] if k.endswith("-sha1") or "group1-" in k]
    for family in ("host_keys", "pubkeys"):
        assert lists[family] and not [k for k in lists[family] if k.split("-cert-")[0] in ("ssh-rsa", "ssh-dss")]
    assert lists["ciphers"][0].endswith("-gcm@openssh.com")  # fastest first


def test_named_legacy_algorithms_are_added_last_and_only_they() -> None:
    lists = offered(("3des-cbc", "hmac-md5"))
    modern = offered()

    assert lists["ciphers"] == (*modern["ciphers"], "3des-cbc")
    assert lists["macs"] == (*modern["macs"], "hmac-md5")
    assert lists["kex"] == modern["kex"] and lists["host_keys"] == modern["host_keys"]


def test_every_legacy_choice_is_one_the_ssh_library_can_speak() -> None:
    supported = {
        "ciphers": paramiko.Transport._cipher_info,
        "macs": paramiko.Transport._mac_info,
        "kex": paramiko.Transport._kex_info,
        "host_keys": paramiko.Transport._key_info,
    }
    assert [name for name, (family, _) in ssh_policy.LEGACY.items() if name not in supported[family]] == []
    assert [name for name, (family, _) in ssh_policy.UNSUPPORTED.items() if name in supported[family]] == []


def test_the_algorithms_in_use_that_are_legacy() -> None:
    assert legacy_in_use({"cipher": "aes128-cbc", "mac": "hmac-sha1"}) == ["aes128-cbc", "hmac-sha1"]
    assert legacy_in_use({"cipher": "aes128-gcm@openssh.com", "mac": "hmac-sha1"}) == []  # GCM uses no MAC
    assert legacy_in_use({"cipher": "aes128-ctr", "mac": "hmac-sha2-256"}) == []


# --- the rule file field


def rule_file(tmp_path: Path, **destination: Any) -> Path:
    document = {
        "client_id": "acme",
        "destinations": [
            {
                "name": "dms",
                "url": "sftp://acme@dms.example/in",
                "password": "${ACME}",
                "host_key": HOST_KEY,
                **destination,
            }
        ],
    }
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_ssh_legacy_algorithms_loads_and_is_warned_about_once_per_algorithm(tmp_path: Path) -> None:
    rules = read_rule_file(rule_file(tmp_path, ssh_legacy_algorithms=["aes128-cbc", "hmac-sha1"]))

    assert not isinstance(rules, list), rules
    destination = rules.destinations[0]
    assert isinstance(destination, SFTPDestination)
    assert destination.ssh_legacy_algorithms == ["aes128-cbc", "hmac-sha1"]
    warnings = rule_warnings(rules)
    assert warnings == [
        "destination dms: ssh_legacy_algorithms enables aes128-cbc, a CBC cipher: ask the server's operator for "
        "a modern cipher",
        "destination dms: ssh_legacy_algorithms enables hmac-sha1, a SHA-1 MAC: ask the server's operator for "
        "a modern MAC",
    ]


def test_an_unknown_algorithm_is_a_rule_error_naming_the_field_and_the_choices(tmp_path: Path) -> None:
    errors = read_rule_file(rule_file(tmp_path, ssh_legacy_algorithms=["aes128-cbc", "aes-128-cbc"]))

    assert isinstance(errors, list)
    [error] = errors
    assert error.field is not None and error.field.startswith("destinations[0].ssh_legacy_algorithms")
    assert "unknown algorithm 'aes-128-cbc'" in error.reason
    assert "valid choices: aes128-cbc, aes192-cbc, aes256-cbc, 3des-cbc, hmac-sha1" in error.reason


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("diffie-hellman-group1-sha1", "cannot be enabled: ftpexport's SSH library does not speak it"),
        ("ssh-rsa", "cannot be enabled"),
        ("aes256-gcm@openssh.com", "is offered by default: only old algorithms are listed here"),
    ],
)
def test_algorithms_that_cannot_or_need_not_be_named_are_rule_errors(tmp_path: Path, name: str, reason: str) -> None:
    errors = read_rule_file(rule_file(tmp_path, ssh_legacy_algorithms=[name]))

    assert isinstance(errors, list)
    assert reason in errors[0].reason


def test_an_ftp_destination_has_no_ssh_legacy_algorithms(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "client_id": "acme",
                "destinations": [
                    {
                        "name": "tls",
                        "url": "ftps://acme@ftps.example/p",
                        "password": "${A}",
                        "ssh_legacy_algorithms": ["aes128-cbc"],
                    }
                ],
            }
        )
    )
    errors = read_rule_file(path)

    assert isinstance(errors, list) and "ssh_legacy_algorithms" in (errors[0].field or "")


# --- a negotiation with nothing in common


def test_a_mismatch_names_each_family_without_a_common_algorithm_and_the_field() -> None:
    server = {
        "kex": ["curve25519-sha256", "kex-strict-s-v00@openssh.com"],
        "host_keys": ["ssh-ed25519"],
        "ciphers": ["aes128-cbc", "3des-cbc", "aes128-cbc", "3des-cbc"],
        "macs": ["hmac-sha1"],
    }
    ours = {
        "kex": ["curve25519-sha256"],
        "host_keys": ["ssh-ed25519"],
        "ciphers": ["aes128-ctr"],
        "macs": ["hmac-sha2-256"],
    }

    message, hint = ssh_policy.describe_mismatch("10.0.0.1:22", server, ours)

    assert message == (
        "no SSH algorithm in common with the server at 10.0.0.1:22: cipher: it offers only aes128-cbc, 3des-cbc; "
        "MAC: it offers only hmac-sha1"
    )
    assert "ssh_legacy_algorithms: [aes128-cbc, hmac-sha1]" in hint


def test_a_mismatch_on_something_ftpexport_cannot_speak_says_the_server_must_change() -> None:
    server = {"kex": ["curve25519-sha256"], "host_keys": ["ssh-rsa", "ssh-dss"], "ciphers": ["aes128-ctr"],
              "macs": ["hmac-sha2-256"]}  # fmt: skip
    ours = {"kex": ["curve25519-sha256"], "host_keys": ["ssh-ed25519", "rsa-sha2-256"], "ciphers": ["aes128-ctr"],
            "macs": ["hmac-sha2-256"]}  # fmt: skip

    message, hint = ssh_policy.describe_mismatch("10.0.0.1:22", server, ours)

    assert message.endswith("host key: it offers only ssh-rsa, ssh-dss")
    assert hint == (
        "ftpexport cannot speak any host key algorithm the server offers: the server must enable a modern one"
    )
    assert "ssh_legacy_algorithms" not in hint

"""netguard.py: where a webhook may go (SSRF): addresses that are not global refused, IP literals in
every form a resolver accepts, one private address among public ones refusing the host (no network)."""

from __future__ import annotations

import ipaddress

import pytest

from ftpexport.errors import PermanentError
from ftpexport.netguard import address_refusal, checked_addresses, ip_literal


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("fd12:3456::1", "unique local"),
        ("fc00::1", "unique local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private"),
        ("2002:a9fe:a9fe::1", "link-local"),
        ("192.0.2.10", "documentation"),
    ],
)
def test_addresses_that_are_not_global_are_refused(address: str, kind: str) -> None:
    reason = address_refusal(ipaddress.ip_address(address))

    assert reason is not None and reason.startswith(kind), reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_global_addresses_are_accepted(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("2130706433", "127.0.0.1"), ("127.1", "127.0.0.1"),
     ("0x7f.0.0.1", "127.0.0.1"), ("hooks.example.com", None), ("beef.cafe", None)],
)  # fmt: skip
def test_ip_literals_in_every_form_a_resolver_accepts(host: str, address: str | None) -> None:
    found = ip_literal(host)

    assert (str(found) if found else None) == address


def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    with pytest.raises(PermanentError) as caught:
        checked_addresses("hooks.example.com", ["93.184.216.34", "10.0.0.7"], allow_private=False, label="acme webhook")

    message = str(caught.value)
    assert "hooks.example.com resolves to 10.0.0.7, a private address" in message
    assert "allow_private: true" in message
    assert checked_addresses("h", ["10.0.0.7"], allow_private=True, label="x") == ["10.0.0.7"]
    assert checked_addresses("h", ["93.184.216.34"], allow_private=False, label="x") == ["93.184.216.34"]

"""May we dial this address: the one place that says where a connection may go (SSRF).

Today the clients' webhooks: their host is resolved once (``resolve``) and every address it resolves
to must be globally routable (``checked_addresses``) unless the rule file says
``allow_private: true``; a rule file's URL that names an address itself is judged when it loads
(``ip_literal``, ``address_refusal``). Anything else that dials out should ask here too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from .errors import PermanentError, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: where a webhook must never go unless the rule file says ``allow_private: true`` (SSRF): the
#: networks of RFC 6890 that are not globally reachable, multicast and the reserved ranges
_REFUSED_NETWORKS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),
    ("100::/64", "reserved"),
    ("2001::/23", "reserved"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_REFUSED = tuple((ipaddress.ip_network(net), kind) for net, kind in _REFUSED_NETWORKS)
#: IPv6 ranges that carry an IPv4 address in their last 32 bits: judged by that address
_EMBEDDING_V4 = tuple(ipaddress.ip_network(net) for net in ("::ffff:0:0/96", "::/96", "64:ff9b::/96"))


def address_refusal(address: IPAddress) -> str | None:
    """Why a webhook may not go to ``address`` without ``allow_private`` (e.g. ``"loopback"``); None if global."""
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # without a %scope
    for network, kind in _REFUSED:
        if address.version == network.version and address in network:
            return kind
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.sixtofour
        if embedded is None and any(address in net for net in _EMBEDDING_V4):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = address_refusal(embedded)
            return f"{reason} (inside an IPv6 address)" if reason else None
    if not address.is_global or address.is_multicast or address.is_reserved:
        return "not globally routable"
    return None


def ip_literal(host: str) -> IPAddress | None:
    """The address a URL's host names without DNS (``127.0.0.1``, ``::1``, also ``2130706433``), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if ":" in host:
        return None
    try:  # the forms inet_aton accepts (and DNS resolvers with it): 127.1, 0x7f.0.0.1, 2130706433
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def private_hint(where: str = "the notify block") -> str:
    """What to set to send a webhook to a private address on purpose."""
    return f"if this endpoint is on your own network on purpose, set allow_private: true in {where}"


#: ``resolver(host, port)``: the addresses of a host, as text (``socket.getaddrinfo`` by default)
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order, each once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def checked_addresses(host: str, addresses: list[str], *, allow_private: bool, label: str) -> list[str]:
    """``addresses`` if every one of them may be called; raises ``PermanentError`` saying which may not."""
    if not addresses:
        raise TransientError(f"host {host} resolves to no address", destination=label)
    if allow_private:
        return addresses
    for text in addresses:
        reason = address_refusal(ipaddress.ip_address(text))
        if reason is not None:
            raise PermanentError(
                f"refused: host {host} resolves to {text}, a {reason} address; webhooks to private, loopback, "
                "link-local and reserved addresses are refused (they could reach internal services)",
                destination=label,
                hint=private_hint("the notify block of the rule file"),
            )
    return addresses

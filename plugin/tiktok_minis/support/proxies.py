"""Which address a client connects from, behind the reverse proxies the operator trusts.

A proxy puts the address it saw in ``X-Forwarded-For`` and appends to what the client sent, so
only the hops that trusted proxies added can be believed: reading the header from the right,
the first address that is not a trusted proxy is the client. Without trusted proxies the header
is ignored (any client can write it) and the peer address is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["TrustedProxies", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[Network]:
    """Addresses or CIDR networks (``10.0.0.0/8``, ``::1``); ``ValueError`` names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value.strip()!r} is not an IP address or network") from None
    return networks


class TrustedProxies:
    """The operator's trusted proxies, and the client address they vouch for."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks = parse_networks(networks)

    def trusts(self, address: str) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address: the peer's, or past trusted proxies the first other hop."""
        address = peer or "unknown"
        if not self._networks or forwarded_for is None or not self.trusts(address):
            return address
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            if not hop:
                continue
            address = hop
            if not self.trusts(hop):
                break
        return address

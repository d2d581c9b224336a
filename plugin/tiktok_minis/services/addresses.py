"""Which addresses an avatar download may connect to: public ones, and the allow-listed.

A link is data from outside, so a download may never reach inside: every hop (redirects are
followed by :class:`~tiktok_minis.services.avatars.Avatars`, each one checked) must connect to a
public address. Names are judged by the addresses they resolve to, in the resolver aiohttp then
connects with (:class:`GuardedResolver`), so a name that resolves to a public address once and to
an internal one the next time (DNS rebinding) gains nothing. Loopback, private, link-local,
multicast, reserved and unspecified addresses are refused, IPv4 and IPv6 alike, an IPv6 address
that carries an IPv4 one judged by that. The allow-list names the exceptions, exactly (scheme,
host and port): the sandbox emulator's own loopback server, a test's image server.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Final, NamedTuple

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

__all__ = [
    "ForbiddenAddress",
    "GuardedResolver",
    "Origin",
    "host_key",
    "is_public",
    "looks_numeric",
    "origin_of",
    "parse_origin",
    "public_address",
]

# NAT64's well-known prefix (RFC 6052): the last 32 bits are the IPv4 address reached.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


class ForbiddenAddress(OSError):
    """A name resolved to an address a download may not connect to.

    An ``OSError``, as resolvers fail: aiohttp wraps it in a ``ClientConnectorError``.
    """

    def __init__(self, address: str) -> None:
        super().__init__(f"refused to connect to {address}")
        self.address = address


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is a public unicast address, one an avatar may be fetched from."""
    if isinstance(address, ipaddress.IPv6Address):
        # The packets go to the IPv4 address inside: that one decides (::ffff:127.0.0.1 is
        # loopback however the IPv6 tables see it).
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
        if address.teredo is not None or address.is_site_local:
            return False
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast  # is_global counts some multicast as global
        or address.is_reserved
        or address.is_unspecified
    )


def looks_numeric(host: str) -> bool:
    """Whether aiohttp takes ``host`` for an IP address, connecting without any lookup.

    Its test (a colon, or digits and dots only) also takes ``127.1`` and ``2130706433``, which
    the operating system reads as 127.0.0.1: such hosts must parse as a strict address here.
    """
    return ":" in host or host.replace(".", "").isdigit()


def public_address(host: str) -> bool:
    """Whether the address text ``host`` (from a URL or a resolver) is a public one."""
    try:
        return is_public(ipaddress.ip_address(host))
    except ValueError:
        return False  # not an address Python reads strictly: the OS might read it loosely


def host_key(host: str) -> str:
    """``host`` as compared with the allow-list: an address in its canonical form, else lower."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


class Origin(NamedTuple):
    """An origin as compared with the allow-list: the host in :func:`host_key` form."""

    scheme: str
    host: str
    port: int


def origin_of(url: URL) -> Origin | None:
    """The origin ``url`` connects to; ``None`` without a host or a port."""
    if url.raw_host is None or url.port is None:
        return None
    return Origin(url.scheme, host_key(url.raw_host), url.port)


def parse_origin(raw: str) -> tuple[Origin, str]:
    """An allow-list entry and how it is shown; ValueError naming the option when malformed."""
    problem = (
        f"allowed_origins takes origins like http://127.0.0.1:8080 (scheme, host and port, "
        f"no path), not {raw!r}"
    )
    try:
        url = URL(raw)
        origin = origin_of(url)
    except (ValueError, TypeError) as exc:
        raise ValueError(problem) from exc
    if (
        url.scheme not in ("http", "https")
        or origin is None
        or url.path not in ("", "/")
        or url.query_string
        or url.fragment
        or url.user is not None
        or url.password is not None
    ):
        raise ValueError(problem)
    return origin, str(url.origin())


class GuardedResolver(AbstractResolver):
    """Resolves names with ``inner`` and refuses any answer with an internal address in it.

    aiohttp connects to exactly the addresses returned here, so what is checked is what is
    connected to. ``allows(host, port)`` names the allow-listed endpoints that may be internal.
    """

    def __init__(
        self, inner: AbstractResolver, *, owns_inner: bool, allows: Callable[[str, int], bool]
    ) -> None:
        self._inner = inner
        self._owns_inner = owns_inner
        self._allows = allows

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The inner resolver's answer, or :class:`ForbiddenAddress`."""
        results = await self._inner.resolve(host, port, family)
        if self._allows(host, port):
            return results
        for result in results:
            # All or nothing: a name whose answer mixes public and internal addresses is no CDN.
            if not public_address(result["host"]):
                raise ForbiddenAddress(result["host"])
        return results

    async def close(self) -> None:
        """Close the inner resolver if this one made it."""
        if self._owns_inner:
            await self._inner.close()

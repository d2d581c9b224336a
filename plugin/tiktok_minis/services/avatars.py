"""Avatars that last: TikTok's signed avatar links copied into the database and served from here.

TikTok's ``avatar_url`` is a signed CDN link that answers 403 within hours, long before the
profile is refreshed (every 3 to 7 days). So when a profile is fetched, :meth:`Avatars.keep`
downloads the picture (an image type, a bounded size, a short timeout), stores it under the
SHA-256 of its bytes and returns the game's own lasting URL, ``/ttminis/avatars/<digest>``.
:meth:`Avatars.add_routes` serves those URLs; anything that goes wrong on either side ends with
the default avatar, never a broken image.

Signed links are close to credentials: logs carry the link's host and path, never its query.

A link is data from outside, so a download may never reach inside: every hop (redirects are
followed here, each one checked) must connect to a public address. Names are judged by the
addresses they resolve to, in the resolver aiohttp then connects with, so a name that resolves
to a public address once and to an internal one the next time (DNS rebinding) gains nothing.
Loopback, private, link-local, multicast, reserved and unspecified addresses are refused, IPv4
and IPv6 alike, an IPv6 address that carries an IPv4 one judged by that. ``allowed_origins``
names the exceptions, exactly (scheme, host and port): the sandbox emulator's own loopback
server, a test's image server. Without any, nothing internal is ever fetched.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterable
from typing import Final, NamedTuple
from urllib.parse import urlsplit

import aiohttp
from aiohttp import hdrs, web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from tortoise.exceptions import BaseORMException
from yarl import URL

from tiktok_minis.store import avatars as store

__all__ = ["IMAGE_TYPES", "Avatars"]

log = logging.getLogger("tiktok_minis.avatars")

#: The content types kept; anything else (HTML error pages, JSON, octet-stream) is refused.
IMAGE_TYPES: Final = frozenset(
    {"image/avif", "image/gif", "image/jpeg", "image/png", "image/svg+xml", "image/webp"}
)

_MAX_REDIRECTS: Final = 3
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_MAX_URL_LENGTH: Final = 4096
_CHUNK: Final = 64 * 1024
_DIGEST: Final = re.compile(r"[0-9a-f]{64}")

# A stored avatar never changes (its URL is the hash of its bytes): caches may keep it forever.
_IMMUTABLE: Final = "public, max-age=31536000, immutable"
# SVG can carry scripts and load resources: nothing in a served avatar may run or fetch, and
# ``sandbox`` also covers someone opening the URL directly as a document.
_NO_ACTIVE_CONTENT: Final = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


# NAT64's well-known prefix (RFC 6052): the last 32 bits are the IPv4 address reached.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


class _NotKept(Exception):
    """Why an avatar was not kept: a short reason for the log, the HTTP status, the address."""

    def __init__(self, reason: str, status: int | None = None, address: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.address = address


class _ForbiddenAddress(OSError):
    """A name resolved to an address a download may not connect to.

    An ``OSError``, as resolvers fail: aiohttp wraps it in a ``ClientConnectorError``.
    """

    def __init__(self, address: str) -> None:
        super().__init__(f"refused to connect to {address}")
        self.address = address


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is a public unicast address, one an avatar may be fetched from."""
    if isinstance(address, ipaddress.IPv6Address):
        # The packets go to the IPv4 address inside: that one decides (::ffff:127.0.0.1 is
        # loopback however the IPv6 tables see it).
        if address.ipv4_mapped is not None:
            return _is_public(address.ipv4_mapped)
        if address in _NAT64:
            return _is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None and not _is_public(address.sixtofour):
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


def _looks_numeric(host: str) -> bool:
    """Whether aiohttp takes ``host`` for an IP address, connecting without any lookup.

    Its test (a colon, or digits and dots only) also takes ``127.1`` and ``2130706433``, which
    the operating system reads as 127.0.0.1: such hosts must parse as a strict address here.
    """
    return ":" in host or host.replace(".", "").isdigit()


def _public_address(host: str) -> bool:
    """Whether the address text ``host`` (from a URL or a resolver) is a public one."""
    try:
        return _is_public(ipaddress.ip_address(host))
    except ValueError:
        return False  # not an address Python reads strictly: the OS might read it loosely


def _host_key(host: str) -> str:
    """``host`` as compared with the allow-list: an address in its canonical form, else lower."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def _origin_of(url: URL) -> _Origin | None:
    if url.raw_host is None or url.port is None:
        return None
    return _Origin(url.scheme, _host_key(url.raw_host), url.port)


def _parse_origin(raw: str) -> tuple[_Origin, str]:
    """An allow-list entry and how it is shown; ValueError naming the option when malformed."""
    problem = (
        f"allowed_origins takes origins like http://127.0.0.1:8080 (scheme, host and port, "
        f"no path), not {raw!r}"
    )
    try:
        url = URL(raw)
        origin = _origin_of(url)
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


class _GuardedResolver(AbstractResolver):
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
        """The inner resolver's answer, or :class:`_ForbiddenAddress`."""
        results = await self._inner.resolve(host, port, family)
        if self._allows(host, port):
            return results
        for result in results:
            # All or nothing: a name whose answer mixes public and internal addresses is no CDN.
            if not _public_address(result["host"]):
                raise _ForbiddenAddress(result["host"])
        return results

    async def close(self) -> None:
        """Close the inner resolver if this one made it."""
        if self._owns_inner:
            await self._inner.close()


def _looks_like(content_type: str, data: bytes) -> bool:
    """Whether the bytes start the way the declared image type does.

    A proxy's error page labelled ``image/png`` would otherwise be kept and shown as a broken
    image for days, instead of the default avatar.
    """
    if content_type == "image/png":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    if content_type == "image/jpeg":
        return data.startswith(b"\xff\xd8\xff")
    if content_type == "image/gif":
        return data[:6] in (b"GIF87a", b"GIF89a")
    if content_type == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if content_type == "image/avif":
        return data[4:8] == b"ftyp"  # an ISO media file; the brand varies (avif, avis, mif1)
    # SVG is XML: a prolog, comments or a doctype may come before the root element.
    return b"<svg" in data[:4096].lower()


def _target(raw: str, base: URL | None = None) -> URL:
    """``raw`` as a URL to fetch (joined to ``base`` for a redirect), or why it is refused."""
    # Kept byte for byte (``encoded=True``): requoting would change a signed link's query and
    # break its signature. So only printable ASCII is taken, as a CDN sends it.
    if len(raw) > _MAX_URL_LENGTH or not raw.isascii() or not raw.isprintable() or " " in raw:
        raise _NotKept("malformed_url")
    try:
        url = URL(raw, encoded=True)
        if base is not None:
            url = base.join(url)
        port = url.port
    except ValueError as exc:
        raise _NotKept("malformed_url") from exc
    if not url.scheme and base is None:
        raise _NotKept("relative_url")
    if url.scheme not in ("http", "https"):
        raise _NotKept("scheme")
    if not url.host or port is None:
        raise _NotKept("malformed_url")
    if "@" in (url.raw_authority or ""):
        raise _NotKept("credentials_in_url")
    return url.with_fragment(None)


def _loggable(raw: str) -> str:
    """The link without its query, fragment or user info: what a log may carry."""
    try:
        parts = urlsplit(raw)
    except ValueError:
        return "<malformed>"
    host = parts.netloc.rpartition("@")[2]
    scheme = f"{parts.scheme}:" if parts.scheme else ""
    authority = f"//{host}" if host else ""
    return f"{scheme}{authority}{parts.path}"[:256]


class Avatars:
    """Keeps avatars (downloads and stores them) and serves them from the game's own domain.

    ::

        avatars = Avatars(max_bytes=1 << 20, timeout_seconds=5, default_avatar_url="/d.svg")
        avatars.add_routes(app)
        await avatars.start()
        url = await avatars.keep(user.avatar_url)   # "/ttminis/avatars/<sha256>" or None

    ``start`` opens one HTTP session for the app's life; ``close`` closes it and is idempotent.

    Downloads never connect to an internal address (see the module's docstring) except on the
    ``allowed_origins``, each ``scheme://host:port`` exactly. ``resolver`` replaces aiohttp's
    default name resolver (an aiodns one, or a fake in tests); its answers are checked too, and
    ``close`` leaves a given resolver open.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout_seconds: float,
        default_avatar_url: str,
        url_prefix: str = "/ttminis/avatars",
        allowed_origins: Iterable[str] = (),
        resolver: AbstractResolver | None = None,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be more than 0")
        if not url_prefix.startswith("/"):
            raise ValueError('url_prefix must be a path starting with "/", like /ttminis/avatars')
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.default_avatar_url = default_avatar_url
        self.url_prefix = url_prefix.rstrip("/")
        self._allowed: dict[_Origin, str] = {}
        self.allowed_origins = frozenset(allowed_origins)
        self._resolver = resolver
        self._guard: _GuardedResolver | None = None
        self._http: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"Avatars(url_prefix={self.url_prefix!r}, max_bytes={self.max_bytes})"

    @property
    def allowed_origins(self) -> frozenset[str]:
        """The origins fetched even though their address is internal (none by default).

        Setting it replaces the whole list, at once for the next download; an entry that is not
        ``scheme://host[:port]`` is a ValueError.
        """
        return frozenset(self._allowed.values())

    @allowed_origins.setter
    def allowed_origins(self, origins: frozenset[str]) -> None:
        self._allowed = dict(_parse_origin(origin) for origin in origins)

    def _allows_internal(self, host: str, port: int) -> bool:
        # The scheme is not known to a resolver: _check_hop has refused the other schemes.
        key = _host_key(host)
        return any((origin.host, origin.port) == (key, port) for origin in self._allowed)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session. Starting twice does nothing."""
        if self._http is not None:
            return
        owns_inner = self._resolver is None
        inner = DefaultResolver() if self._resolver is None else self._resolver
        self._guard = _GuardedResolver(inner, owns_inner=owns_inner, allows=self._allows_internal)
        self._http = aiohttp.ClientSession(
            # No DNS cache: every connection is made to an answer checked against the
            # allow-list as it stands now.
            connector=aiohttp.TCPConnector(resolver=self._guard, use_dns_cache=False),
            # A backstop: keep() bounds the whole download, redirects included, itself.
            timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
            # Each download stands alone: no cookie a CDN sets travels to the next one.
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={hdrs.ACCEPT: ",".join(sorted(IMAGE_TYPES))},
            # No proxy from the environment: the address checks are about the connected peer.
            trust_env=False,
        )

    async def close(self) -> None:
        """Close the HTTP session. Closing twice is harmless."""
        http, self._http = self._http, None
        guard, self._guard = self._guard, None
        if http is not None:
            await http.close()
        if guard is not None:
            await guard.close()  # the connector leaves a resolver it was given open

    # -- keeping ------------------------------------------------------------------------------

    def url_for(self, digest: str) -> str:
        """The lasting URL of the avatar stored under ``digest``."""
        return f"{self.url_prefix}/{digest}"

    def digest_of(self, url: str | None) -> str | None:
        """The digest in one of this service's URLs (what :meth:`keep` returned), else ``None``."""
        if url is None or not url.startswith(self.url_prefix + "/"):
            return None
        digest = url[len(self.url_prefix) + 1 :]
        return digest if _DIGEST.fullmatch(digest) else None

    async def keep(self, url: str | None) -> str | None:
        """Download the avatar at ``url``, store it and return its lasting URL.

        ``None`` (the default avatar) when there is no link or anything goes wrong: a link
        that is not absolute http(s) or carries credentials, a hop to an internal address
        outside ``allowed_origins``, more than a few redirects, a
        status other than 200, a type outside :data:`IMAGE_TYPES` or bytes that do not match
        it, more than ``max_bytes``, or more than ``timeout_seconds`` in all. Each failure is
        logged at warning level with its reason and the link without its query.
        """
        if url is None or url == "":
            return None  # the profile has no picture: nothing failed
        http = self._http
        if http is None:
            raise RuntimeError("Avatars is not started: await start() first")
        try:
            target = _target(url)
            async with asyncio.timeout(self.timeout_seconds):
                content_type, data = await self._download(http, target)
            digest = hashlib.sha256(data).hexdigest()
            created = await store.save(digest, content_type, data)
        except _NotKept as refusal:
            self._not_kept(url, refusal.reason, status=refusal.status, address=refusal.address)
            return None
        except TimeoutError:
            self._not_kept(url, "timeout")
            return None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _ForbiddenAddress):
                self._not_kept(url, "forbidden_address", address=exc.os_error.address)
            else:
                self._not_kept(url, "network", error=type(exc).__name__)
            return None
        except aiohttp.ClientError as exc:
            # The class only: an aiohttp error's text can hold the whole URL, query included.
            self._not_kept(url, "network", error=type(exc).__name__)
            return None
        except BaseORMException as exc:
            self._not_kept(url, "store_failed", error=type(exc).__name__)
            return None
        log.debug(
            "avatar kept",
            extra={"event": "avatar_kept", "digest": digest, "bytes": len(data), "new": created},
        )
        return self.url_for(digest)

    async def _download(self, http: aiohttp.ClientSession, url: URL) -> tuple[str, bytes]:
        # Redirects are followed here, not by aiohttp, so that every hop meets the same checks
        # as the first link (scheme, credentials, address) and the count stays small.
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_hop(url)
            async with http.get(url, allow_redirects=False) as response:
                if response.status in _REDIRECT_STATUSES:
                    location = response.headers.get(hdrs.LOCATION)
                    if not location:
                        raise _NotKept("redirect_without_location", response.status)
                    url = _target(location, base=url)
                    continue
                return await self._image(response)
        raise _NotKept("too_many_redirects")

    def _check_hop(self, url: URL) -> None:
        """Refuse a hop to an internal address given as such; names are the resolver's job."""
        origin = _origin_of(url)
        if origin is None:
            raise _NotKept("malformed_url")
        if origin in self._allowed:
            return
        if any((known.host, known.port) == (origin.host, origin.port) for known in self._allowed):
            # The allowed host and port, another scheme: not the origin the list names.
            raise _NotKept("forbidden_address", address=origin.host)
        host = url.raw_host or ""
        if _looks_numeric(host) and not _public_address(host):
            raise _NotKept("forbidden_address", address=host)

    async def _image(self, response: aiohttp.ClientResponse) -> tuple[str, bytes]:
        if response.status != 200:
            raise _NotKept("status", response.status)
        content_type = response.content_type
        if content_type not in IMAGE_TYPES:
            raise _NotKept("content_type", response.status)
        encoding = response.headers.get(hdrs.CONTENT_ENCODING, "identity").lower()
        declared = response.content_length
        # A declared length is believed only to refuse early: it counts encoded bytes, and
        # what is kept is the decoded picture, counted below as it arrives.
        if encoding == "identity" and declared is not None and declared > self.max_bytes:
            raise _NotKept("too_big", response.status)
        data = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            data += chunk
            if len(data) > self.max_bytes:
                raise _NotKept("too_big", response.status)
        if not data:
            raise _NotKept("empty", response.status)
        if not _looks_like(content_type, bytes(data[:4096])):
            raise _NotKept("not_an_image", response.status)
        return content_type, bytes(data)

    def _not_kept(
        self,
        url: str,
        reason: str,
        *,
        status: int | None = None,
        error: str | None = None,
        address: str | None = None,
    ) -> None:
        extra: dict[str, object] = {"event": "avatar_not_kept", "reason": reason}
        extra["link"] = _loggable(url)
        if status is not None:
            extra["status"] = status
        if error is not None:
            extra["error"] = error
        if address is not None:
            extra["address"] = address  # the refused address, never anything of the query
        log.warning("avatar not kept: %s", reason, extra=extra)

    # -- serving ------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Serve ``GET {url_prefix}/{digest}`` (and HEAD) on ``app``."""
        app.router.add_get(self.url_prefix + "/{digest}", self._serve)

    async def _serve(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        if not _DIGEST.fullmatch(digest):
            return self._default()
        headers = {
            hdrs.CACHE_CONTROL: _IMMUTABLE,
            hdrs.ETAG: f'"{digest}"',
            "X-Content-Type-Options": "nosniff",
        }
        # The bytes behind a digest never change: a client holding them needs no query.
        if any(tag.value in (digest, "*") for tag in request.if_none_match or ()):
            return web.Response(status=304, headers=headers)
        try:
            avatar = await store.by_digest(digest)
        except BaseORMException as exc:
            log.warning(
                "avatar not served: the database failed",
                extra={"event": "avatar_not_served", "error": type(exc).__name__},
            )
            return self._default()
        if avatar is None:
            return self._default()
        if avatar.content_type == "image/svg+xml":
            headers["Content-Security-Policy"] = _NO_ACTIVE_CONTENT
        return web.Response(body=avatar.data, content_type=avatar.content_type, headers=headers)

    def _default(self) -> web.Response:
        # A redirect, not an error: an <img> then shows the default avatar instead of a broken
        # image. Not cached for long: the avatar may be stored a moment later.
        return web.Response(
            status=302,
            headers={hdrs.LOCATION: self.default_avatar_url, hdrs.CACHE_CONTROL: "no-cache"},
        )

"""Avatars that last: TikTok's signed avatar links copied into the database, to be served here.

TikTok's ``avatar_url`` is a signed CDN link that answers 403 within hours, long before the
profile is refreshed (every 3 to 7 days). So when a profile is fetched, :meth:`Avatars.keep`
downloads the picture (an image type, a bounded size, a short timeout), stores it under the
SHA-256 of its bytes and returns the game's own lasting URL, ``/ttminis/avatars/<digest>``.
:mod:`tiktok_minis.web.avatars` serves those URLs; anything that goes wrong on either side ends
with the default avatar, never a broken image.

Signed links are close to credentials: logs carry the link's host and path, never its query.

A link is data from outside, so a download may never reach inside: every hop must connect to a
public address (see :mod:`tiktok_minis.services.addresses`). ``allowed_origins`` names the
exceptions, exactly (scheme, host and port): the sandbox emulator's own loopback server, a
test's image server. Without any, nothing internal is ever fetched.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp import hdrs
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from tortoise.exceptions import BaseORMException
from yarl import URL

from tiktok_minis.services.addresses import (
    ForbiddenAddress,
    GuardedResolver,
    Origin,
    host_key,
    looks_numeric,
    origin_of,
    parse_origin,
    public_address,
)
from tiktok_minis.store import Store
from tiktok_minis.store.avatars import StoredAvatar, digest_of, is_digest

__all__ = ["IMAGE_TYPES", "Avatars", "StoredAvatar", "is_digest"]

log = logging.getLogger("tiktok_minis.avatars")

#: The content types kept; anything else (HTML error pages, JSON, octet-stream) is refused.
IMAGE_TYPES: Final = frozenset(
    {"image/avif", "image/gif", "image/jpeg", "image/png", "image/svg+xml", "image/webp"}
)

_MAX_REDIRECTS: Final = 3
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_MAX_URL_LENGTH: Final = 4096
_CHUNK: Final = 64 * 1024


class _NotKept(Exception):
    """Why an avatar was not kept: a short reason for the log, the HTTP status, the address."""

    def __init__(self, reason: str, status: int | None = None, address: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.address = address


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

        avatars = Avatars(store, max_bytes=1 << 20, timeout_seconds=5, default_avatar_url="/d.svg")
        add_avatar_routes(app, avatars)               # tiktok_minis.web.avatars
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
        store: Store,
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
        self._store = store.avatars
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.default_avatar_url = default_avatar_url
        self.url_prefix = url_prefix.rstrip("/")
        self._allowed: dict[Origin, str] = {}
        self.allowed_origins = frozenset(allowed_origins)
        self._resolver = resolver
        self._guard: GuardedResolver | None = None
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
        self._allowed = dict(parse_origin(origin) for origin in origins)

    def _allows_internal(self, host: str, port: int) -> bool:
        # The scheme is not known to a resolver: _check_hop has refused the other schemes.
        key = host_key(host)
        return any((origin.host, origin.port) == (key, port) for origin in self._allowed)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session. Starting twice does nothing."""
        if self._http is not None:
            return
        owns_inner = self._resolver is None
        inner = DefaultResolver() if self._resolver is None else self._resolver
        self._guard = GuardedResolver(inner, owns_inner=owns_inner, allows=self._allows_internal)
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
        return digest_of(url, self.url_prefix)

    async def stored(self, digest: str) -> StoredAvatar | None:
        """The avatar kept under ``digest``; ``None`` when there is none or the database fails
        (either way the default avatar is shown)."""
        try:
            return await self._store.by_digest(digest)
        except BaseORMException as exc:
            log.warning(
                "avatar not served: the database failed",
                extra={"event": "avatar_not_served", "error": type(exc).__name__},
            )
            return None

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
            created = await self._store.save(digest, content_type, data)
        except _NotKept as refusal:
            self._not_kept(url, refusal.reason, status=refusal.status, address=refusal.address)
            return None
        except TimeoutError:
            self._not_kept(url, "timeout")
            return None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ForbiddenAddress):
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
        origin = origin_of(url)
        if origin is None:
            raise _NotKept("malformed_url")
        if origin in self._allowed:
            return
        if any((known.host, known.port) == (origin.host, origin.port) for known in self._allowed):
            # The allowed host and port, another scheme: not the origin the list names.
            raise _NotKept("forbidden_address", address=origin.host)
        host = url.raw_host or ""
        if looks_numeric(host) and not public_address(host):
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

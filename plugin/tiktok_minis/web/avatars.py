"""The avatar route: ``GET <url_prefix>/<sha256>`` (and HEAD) serves the copies that
:class:`~tiktok_minis.services.avatars.Avatars` kept.

Anything that goes wrong (no such digest, a database that fails) redirects to the default
avatar, never a broken image. This is an HTTP face on the avatar service.
"""

from __future__ import annotations

from typing import Final

from aiohttp import hdrs, web

from tiktok_minis.services.avatars import Avatars, is_digest

__all__ = ["add_avatar_routes"]

# A stored avatar never changes (its URL is the hash of its bytes): caches may keep it forever.
_IMMUTABLE: Final = "public, max-age=31536000, immutable"
# SVG can carry scripts and load resources: nothing in a served avatar may run or fetch, and
# ``sandbox`` also covers someone opening the URL directly as a document.
_NO_ACTIVE_CONTENT: Final = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


class _AvatarRoute:
    """The route's handler, holding the service it serves from."""

    def __init__(self, avatars: Avatars) -> None:
        self._avatars = avatars

    async def serve(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        if not is_digest(digest):
            return self._default()
        headers = {
            hdrs.CACHE_CONTROL: _IMMUTABLE,
            hdrs.ETAG: f'"{digest}"',
            "X-Content-Type-Options": "nosniff",
        }
        # The bytes behind a digest never change: a client holding them needs no query.
        if any(tag.value in (digest, "*") for tag in request.if_none_match or ()):
            return web.Response(status=304, headers=headers)
        avatar = await self._avatars.stored(digest)
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
            headers={
                hdrs.LOCATION: self._avatars.default_avatar_url,
                hdrs.CACHE_CONTROL: "no-cache",
            },
        )


def add_avatar_routes(app: web.Application, avatars: Avatars) -> None:
    """Serve ``GET {avatars.url_prefix}/{digest}`` (and HEAD) on ``app``."""
    app.router.add_get(avatars.url_prefix + "/{digest}", _AvatarRoute(avatars).serve)

"""Every query on avatars: the only place that reads or writes ``AvatarRow``, and the one
place that reads a stored avatar's URL.

Rows are content-addressed (the key is the SHA-256 of the bytes) and never change, so writing
is insert-or-ignore: the same picture stored twice, by one process or by several at once, ends
as one row. A player's ``avatar_url`` is either the plugin's lasting URL of such a row,
``<prefix>/<sha256>`` (``/ttminis/avatars/<sha256>`` by default), or a link kept as TikTok gave
it: :func:`digest_of` tells them apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from tiktok_minis.store.database import Queries
from tiktok_minis.store.models import AvatarRow

__all__ = ["AvatarStore", "StoredAvatar", "digest_of", "is_digest"]

_DIGEST: Final = re.compile(r"[0-9a-f]{64}")


def is_digest(text: str) -> bool:
    """Whether ``text`` is a key avatars are stored under: a SHA-256 in lowercase hex."""
    return _DIGEST.fullmatch(text) is not None


def digest_of(url: str | None, prefix: str | None = None) -> str | None:
    """The digest in a stored avatar's URL, ``<prefix>/<sha256>``, else ``None`` (TikTok's own
    link, the placeholder's, no URL at all). Without ``prefix``, any path ending in a digest."""
    if not url:
        return None
    head, _, digest = url.rpartition("/")
    if not is_digest(digest) or (prefix is not None and head != prefix.rstrip("/")):
        return None
    return digest


@dataclass(frozen=True, slots=True)
class StoredAvatar:
    """An avatar image as stored: its digest, its content type and its bytes."""

    digest: str
    content_type: str
    data: bytes


class AvatarStore(Queries):
    """The queries on ``ttminis_avatar``, bound to one database."""

    async def save(self, digest: str, content_type: str, data: bytes) -> bool:
        """Store ``data`` under ``digest`` unless a row has it; ``True`` when this call inserted.

        The caller computes the digest: this store trusts that it is the SHA-256 hex of ``data``.
        """
        # Checking first spares a write (and a megabyte on the wire) for the common case: a
        # profile refresh that finds the same picture again.
        if await AvatarRow.exists(digest=digest):
            return False
        try:
            await AvatarRow.create(digest=digest, content_type=content_type, data=data)
        except IntegrityError:
            # Another task or process stored the same bytes between the check and the insert.
            # Same digest, same bytes: their row is ours. Any other integrity error is not that
            # race.
            if await AvatarRow.exists(digest=digest):
                return False
            raise
        return True

    async def by_digest(self, digest: str) -> StoredAvatar | None:
        """The avatar stored under ``digest``, if any."""
        row = await AvatarRow.get_or_none(digest=digest)
        if row is None:
            return None
        return StoredAvatar(row.digest, row.content_type, bytes(row.data))

    async def delete(self, digest: str, *, using_db: BaseDBAsyncClient | None = None) -> bool:
        """Delete the avatar stored under ``digest`` (inside ``using_db``'s transaction, when
        given); ``True`` when there was one.

        Rows are shared by every player with the same picture: the caller checks that no player
        shows it any more.
        """
        return await AvatarRow.filter(digest=digest).using_db(using_db).delete() > 0

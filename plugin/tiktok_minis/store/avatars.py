"""Every query on avatars: the only place that reads or writes ``AvatarRow``.

Rows are content-addressed (the key is the SHA-256 of the bytes) and never change, so writing
is insert-or-ignore: the same picture stored twice, by one process or by several at once, ends
as one row.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.exceptions import IntegrityError

from tiktok_minis.store.models import AvatarRow

__all__ = ["StoredAvatar", "by_digest", "delete", "save"]


@dataclass(frozen=True, slots=True)
class StoredAvatar:
    """An avatar image as stored: its digest, its content type and its bytes."""

    digest: str
    content_type: str
    data: bytes


async def save(digest: str, content_type: str, data: bytes) -> bool:
    """Store ``data`` under ``digest`` unless a row has it; ``True`` when this call inserted.

    The caller computes the digest: this module trusts that it is the SHA-256 hex of ``data``.
    """
    # Checking first spares a write (and a megabyte on the wire) for the common case: a
    # profile refresh that finds the same picture again.
    if await AvatarRow.exists(digest=digest):
        return False
    try:
        await AvatarRow.create(digest=digest, content_type=content_type, data=data)
    except IntegrityError:
        # Another task or process stored the same bytes between the check and the insert.
        # Same digest, same bytes: their row is ours. Any other integrity error is not that race.
        if await AvatarRow.exists(digest=digest):
            return False
        raise
    return True


async def by_digest(digest: str) -> StoredAvatar | None:
    """The avatar stored under ``digest``, if any."""
    row = await AvatarRow.get_or_none(digest=digest)
    if row is None:
        return None
    return StoredAvatar(row.digest, row.content_type, bytes(row.data))


async def delete(digest: str) -> bool:
    """Delete the avatar stored under ``digest``; ``True`` when there was one.

    Rows are shared by every player with the same picture: the caller checks that no player
    shows it any more.
    """
    return await AvatarRow.filter(digest=digest).delete() > 0

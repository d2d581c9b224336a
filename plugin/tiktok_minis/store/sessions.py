"""Every query on ended sessions: the only place that reads or writes ``SessionEndRow``.

Sessions themselves are signed strings that live with the clients; what the database holds is
which of them ended: one string (by its digest) at a logout, or all of a player's sessions
below an epoch at a logout everywhere or a forget. ``PlayerRow.session_epoch`` is the epoch that
new sessions are issued under.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q

from tiktok_minis.store.models import PlayerRow, SessionEndRow

__all__ = [
    "FORGOTTEN_EPOCH",
    "SessionEnd",
    "delete_older_than",
    "end_all",
    "end_forgotten",
    "end_one",
    "ended_since",
    "is_ended",
    "latest_id",
]


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """One recorded end: of the session with ``digest``, or of every session of the player
    issued under an epoch below ``epoch``."""

    id: int
    public_id: str
    digest: str | None
    epoch: int | None
    reason: str


async def end_one(public_id: str, digest: str, *, reason: str, now: datetime) -> None:
    """Record that the session with ``digest`` ended. Ending it twice is harmless."""
    with contextlib.suppress(IntegrityError):  # already ended: the unique digest says so
        await SessionEndRow.create(
            public_id=public_id, digest=digest, reason=reason, created_at=now
        )


async def end_all(
    open_id: str, public_id: str, *, reason: str, now: datetime, epoch: int | None = None
) -> int:
    """End every session of the player: move its epoch on (one atomic increment, so two ends at
    once both count) and record the end; the epoch new sessions get.

    ``epoch`` records an end beyond any epoch instead (the player is being forgotten: no session
    of that public id may ever resume).
    """
    if epoch is None:
        await PlayerRow.filter(open_id=open_id).update(session_epoch=F("session_epoch") + 1)
        row = await PlayerRow.get_or_none(open_id=open_id).only("session_epoch")
        epoch = row.session_epoch if row is not None else 0
    await SessionEndRow.create(public_id=public_id, epoch=epoch, reason=reason, created_at=now)
    return epoch


#: The epoch a forgotten player's end carries: above any epoch a session can hold.
FORGOTTEN_EPOCH = 2**31 - 1


async def end_forgotten(public_id: str, *, now: datetime, using_db: BaseDBAsyncClient) -> None:
    """Record, inside the transaction that deletes the player, that none of their sessions may
    resume and that every process must unbind their connections."""
    await SessionEndRow.create(
        public_id=public_id,
        epoch=FORGOTTEN_EPOCH,
        reason="forgotten",
        created_at=now,
        using_db=using_db,
    )


async def is_ended(digest: str) -> bool:
    """Whether the session with ``digest`` was ended on its own."""
    return await SessionEndRow.filter(digest=digest).exists()


async def latest_id() -> int:
    """The id of the newest end recorded (0 when none): where a new follower starts."""
    row = await SessionEndRow.all().order_by("-id").only("id").first()
    return int(row.id) if row is not None else 0


async def ended_since(
    after_id: int, also: Sequence[int] = (), limit: int = 500
) -> list[SessionEnd]:
    """The ends recorded after ``after_id`` and those with an id in ``also``, oldest first, at
    most ``limit`` of them."""
    where = Q(id__gt=after_id) | Q(id__in=list(also)) if also else Q(id__gt=after_id)
    rows = await SessionEndRow.filter(where).order_by("id").limit(limit)
    return [
        SessionEnd(int(row.id), row.public_id, row.digest, row.epoch, row.reason) for row in rows
    ]


async def delete_older_than(cutoff: datetime) -> int:
    """Housekeeping: delete the ends recorded before ``cutoff`` (no session that old resumes)."""
    deleted: int = await SessionEndRow.filter(created_at__lt=cutoff).delete()
    return deleted

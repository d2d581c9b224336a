"""Every query on ended sessions: the only place that reads or writes ``SessionEndRow``.

Sessions themselves are signed strings that live with the clients; what the database holds is
which of them ended: one string (by its digest) at a logout, or all of a player's sessions
below an epoch at a logout everywhere or a forget. ``PlayerRow.session_epoch`` is the epoch that
new sessions are issued under (see :meth:`PlayerStore.next_session_epoch
<tiktok_minis.store.players.PlayerStore.next_session_epoch>`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from tiktok_minis.store import follow
from tiktok_minis.store.database import Queries
from tiktok_minis.store.models import SessionEndRow

__all__ = ["FORGOTTEN_EPOCH", "SessionEnd", "SessionStore"]

#: The epoch a forgotten player's end carries: above any epoch a session can hold.
FORGOTTEN_EPOCH = 2**31 - 1


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """One recorded end: of the session with ``digest``, or of every session of the player
    issued under an epoch below ``epoch``."""

    id: int
    public_id: str
    digest: str | None
    epoch: int | None
    reason: str


class SessionStore(Queries):
    """The queries on ``ttminis_session_end``, bound to one database."""

    async def end_one(self, public_id: str, digest: str, *, reason: str, now: datetime) -> None:
        """Record that the session with ``digest`` ended. Ending it twice is harmless."""
        with contextlib.suppress(IntegrityError):  # already ended: the unique digest says so
            await SessionEndRow.create(
                public_id=public_id, digest=digest, reason=reason, created_at=now
            )

    async def end_below(self, public_id: str, epoch: int, *, reason: str, now: datetime) -> None:
        """Record that every session of the player issued under an epoch below ``epoch`` ended."""
        await SessionEndRow.create(public_id=public_id, epoch=epoch, reason=reason, created_at=now)

    async def end_forgotten(
        self, public_id: str, *, now: datetime, using_db: BaseDBAsyncClient
    ) -> None:
        """Record, inside the transaction that deletes the player, that none of their sessions
        may resume and that every process must unbind their connections."""
        await SessionEndRow.create(
            public_id=public_id,
            epoch=FORGOTTEN_EPOCH,
            reason="forgotten",
            created_at=now,
            using_db=using_db,
        )

    async def is_ended(self, digest: str) -> bool:
        """Whether the session with ``digest`` was ended on its own."""
        return await SessionEndRow.filter(digest=digest).exists()

    async def latest_id(self) -> int:
        """The id of the newest end recorded (0 when none): where a new follower starts."""
        return await follow.latest_id(SessionEndRow)

    async def ended_since(
        self, after_id: int, also: Sequence[int] = (), limit: int = 500
    ) -> list[SessionEnd]:
        """The ends recorded after ``after_id`` and those with an id in ``also``, oldest first,
        at most ``limit`` of them."""
        rows = await SessionEndRow.filter(follow.after(after_id, also)).order_by("id").limit(limit)
        return [
            SessionEnd(int(row.id), row.public_id, row.digest, row.epoch, row.reason)
            for row in rows
        ]

    async def delete_older_than(self, cutoff: datetime) -> int:
        """Housekeeping: delete the ends recorded before ``cutoff`` (no session that old
        resumes)."""
        deleted: int = await SessionEndRow.filter(created_at__lt=cutoff).delete()
        return deleted

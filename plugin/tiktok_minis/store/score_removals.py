"""Every query on removed score rows: the only place that reads or writes ``ScoreRemovalRow``.

When a player is forgotten, the transaction that deletes their scores records each deleted row
here; every process follows the table (see :mod:`tiktok_minis.support.feeds`) and drops the rows
from its rank index, whichever process (or the operator's shell) did the forgetting.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from tortoise.backends.base.client import BaseDBAsyncClient

from tiktok_minis.store import follow
from tiktok_minis.store.database import Queries
from tiktok_minis.store.models import ScoreRemovalRow

__all__ = ["Removal", "ScoreRemovalStore"]


class Removal(NamedTuple):
    """A deleted score row: where it was and its id."""

    id: int
    board: str
    period: str
    row_id: int


class ScoreRemovalStore(Queries):
    """The queries on ``ttminis_score_removal``, bound to one database."""

    async def record(
        self, rows: Sequence[tuple[int, str, str]], *, now: datetime, using_db: BaseDBAsyncClient
    ) -> None:
        """Record deleted rows ``(row_id, board, period)``, inside the transaction deleting them."""
        if rows:
            await ScoreRemovalRow.bulk_create(
                [
                    ScoreRemovalRow(row_id=row_id, board=board, period=period, created_at=now)
                    for row_id, board, period in rows
                ],
                using_db=using_db,
            )

    async def latest_id(self) -> int:
        """The id of the newest removal recorded (0 when none): where a new follower starts."""
        return await follow.latest_id(ScoreRemovalRow)

    async def removed_since(
        self, after_id: int, also: Sequence[int] = (), limit: int = 5000
    ) -> list[Removal]:
        """The removals after ``after_id`` and those with an id in ``also``, oldest first."""
        rows = (
            await ScoreRemovalRow.filter(follow.after(after_id, also)).order_by("id").limit(limit)
        )
        return [Removal(int(row.id), row.board, row.period, int(row.row_id)) for row in rows]

    async def delete_older_than(self, cutoff: datetime) -> int:
        """Housekeeping: delete the removals recorded before ``cutoff``."""
        deleted: int = await ScoreRemovalRow.filter(created_at__lt=cutoff).delete()
        return deleted

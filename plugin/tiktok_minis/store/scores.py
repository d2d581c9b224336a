"""Every query on scores: the only place that reads or writes ``ScoreRow``.

The statements themselves are in :mod:`tiktok_minis.store.score_sql`; :class:`ScoreStore` runs
them on one database. Rows carry no names: each query joins the current ``ttminis_player`` row,
and the caller decides how to show it through a ``render`` callback (``render(rank, score,
public_id, display_name, avatar_url)``), so no intermediate object is built per row.

Costs, all on indexes: ``top``, ``row_of``, ``shown`` and the upsert read a handful of index
entries whatever the board's size; a counted rank (``entry``, ``around``, ``rank_of``) counts
the rows ahead, so it grows with the rank. The leaderboard service counts only while its rank
index cannot answer (see :mod:`tiktok_minis.ranking`); the counts are also the tests' oracle.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from tiktok_minis.errors import ScoreRejected, UnknownPlayer
from tiktok_minis.store.database import Database, Queries, db_timestamp, for_dialect
from tiktok_minis.store.models import ScoreRow
from tiktok_minis.store.score_removals import ScoreRemovalStore
from tiktok_minis.store.score_sql import (
    RANKINGS,
    ROW_OF,
    SHOWN_POSTGRES,
    SHOWN_SQLITE,
    WRITTEN_SINCE,
    Operator,
    Order,
    Position,
    Ranking,
    statements,
)

__all__ = [
    "RANKINGS",
    "BoardPeriod",
    "Indexed",
    "Operator",
    "Order",
    "Position",
    "Ranking",
    "Render",
    "ScoreStore",
    "ScoreWrite",
    "Shown",
    "Written",
    "db_timestamp",
    "reached_at",
]

T = TypeVar("T")
#: Builds what the caller wants from one ranked row: (rank, score, public_id, name, avatar).
Render = Callable[[int, int, str, str | None, str | None], T]
#: What a row shows on a board: (public_id, display_name, avatar_url).
Shown = tuple[str, str | None, str | None]
#: A row as a rank index loads it: (id, version, score, reached_at).
Indexed = tuple[int, int, int, datetime]


@dataclass(frozen=True, slots=True)
class BoardPeriod:
    """Where a query looks: the rows of one board's period, ranked by the board's order."""

    board: str
    period: str
    order: Order = "desc"


@dataclass(frozen=True, slots=True)
class ScoreWrite:
    """One score to apply to the player's row in ``where``: by ``operator``, reached ``at``."""

    where: BoardPeriod
    operator: Operator
    open_id: str
    score: int
    at: datetime


class Written(NamedTuple):
    """A score row as an upsert left it, with its player's current profile."""

    id: int
    score: int
    reached_at: datetime
    version: int
    public_id: str
    display_name: str | None
    avatar_url: str | None


def reached_at(value: datetime | str) -> datetime:
    """A ``reached_at`` as the driver returns it (SQLite: the fixed-width text) as a datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


class ScoreStore(Queries):
    """The queries on ``ttminis_score``, bound to one database.

    Deleting a player's rows records each of them in ``removals`` (for the rank indexes).
    """

    def __init__(self, database: Database, removals: ScoreRemovalStore) -> None:
        super().__init__(database)
        self._removals = removals

    async def _rows(self, sql: str, values: list[Any]) -> Sequence[Any]:
        # Rows come back as sqlite3.Row or asyncpg.Record: both are indexed by position.
        return (await self.connection().execute_query(sql, values))[1]

    async def write(self, change: ScoreWrite) -> Written | None:
        """Apply one score in one atomic upsert; the row as written, ``None`` when nothing changed.

        ``best`` replaces only a better score, ``latest`` always replaces, ``incr`` adds. The
        stored ``reached_at`` becomes ``at`` only when the score changes, and every write moves
        the row's ``version`` on. When ``best`` keeps the stored score nothing is written.

        Raises :class:`UnknownPlayer` when no player has that ``open_id``, and
        :class:`ScoreRejected` when an increment would overflow 64 bits (nothing is written).
        """
        where, open_id = change.where, change.open_id
        try:
            # execute_query_dict: tortoise's PostgreSQL execute_query discards the rows of any
            # statement that starts with INSERT, RETURNING included.
            rows = await self.connection().execute_query_dict(
                statements(self.dialect, where.order).upsert[change.operator],
                [where.board, where.period, open_id, change.score, self._at(change.at)],
            )
        except IntegrityError as exc:
            # The only constraint the upsert can break is the foreign key to the player.
            raise UnknownPlayer(f"No player has open_id {open_id!r}.") from exc
        if not rows:
            if change.operator == "incr":
                raise ScoreRejected(
                    f"Adding {change.score} to the player's score on board {where.board!r} "
                    "would overflow 64 bits."
                )
            return None
        row = rows[0]
        if row["public_id"] is None:  # the player was deleted while the row was written
            raise UnknownPlayer(f"No player has open_id {open_id!r}.")
        return Written(
            row["id"],
            row["score"],
            reached_at(row["reached_at"]),
            row["version"],
            row["public_id"],
            row["display_name"],
            row["avatar_url"],
        )

    def _at(self, at: datetime) -> datetime | str:
        return db_timestamp(self.dialect, at)

    async def rank_of(self, where: BoardPeriod, row: Written) -> int:
        """The rank of a row just written, counted in the database (when no index can say)."""
        ranked = await self._rows(
            statements(self.dialect, where.order).rank_of,
            [where.board, where.period, row.score, self._at(row.reached_at), row.id],
        )
        return int(ranked[0][0])

    async def row_of(self, where: BoardPeriod, open_id: str) -> Written | None:
        """The player's row in ``where`` with their current profile, ``None`` without one."""
        rows = await self._rows(
            for_dialect(self.dialect, ROW_OF), [where.board, where.period, open_id]
        )
        if not rows:
            return None
        row = rows[0]
        return Written(row[0], row[1], reached_at(row[2]), row[3], row[4], row[5], row[6])

    async def shown(self, row_ids: Sequence[int]) -> dict[int, Shown]:
        """Each row's player as they are now, by row id; deleted rows are missing."""
        if not row_ids:
            return {}
        if self.dialect == "postgres":
            rows = await self._rows(SHOWN_POSTGRES, [list(row_ids)])
        else:
            rows = await self._rows(SHOWN_SQLITE, [json.dumps(list(row_ids))])
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    async def load(self, where: BoardPeriod, batch: int = 20_000) -> AsyncIterator[list[Indexed]]:
        """Every row of ``where``, best first, ``batch`` rows a query.

        Each query starts behind the last row of the one before (keyset pagination on the
        board's index), so a million rows cost a hundred short range scans, not one long read.
        """
        sql = statements(self.dialect, where.order)
        rows = await self._rows(sql.load_first, [where.board, where.period, batch])
        while rows:
            loaded = [(row[0], row[1], row[2], reached_at(row[3])) for row in rows]
            yield loaded
            if len(rows) < batch:
                return
            last_id, _, last_score, last_reached = rows[-1]
            rows = await self._rows(
                sql.load_next,
                [where.board, where.period, batch, last_score, last_reached, last_id],
            )

    async def written_since(self, since: datetime) -> list[tuple[str, str, Indexed]]:
        """The rows written at or after ``since``: (board, period, row), for an index's repair."""
        rows = await self._rows(for_dialect(self.dialect, WRITTEN_SINCE), [self._at(since)])
        return [(row[0], row[1], (row[2], row[3], row[4], reached_at(row[5]))) for row in rows]

    async def top(self, where: BoardPeriod, limit: int, render: Render[T]) -> list[T]:
        """The best ``limit`` entries of ``where``, best first, with current profiles."""
        rows = await self._rows(
            statements(self.dialect, where.order).top, [where.board, where.period, limit]
        )
        return [render(rank, row[0], row[1], row[2], row[3]) for rank, row in enumerate(rows, 1)]

    async def entry(self, where: BoardPeriod, open_id: str, render: Render[T]) -> T | None:
        """The player's entry in ``where``, or ``None`` when it holds no score of theirs."""
        rows = await self._rows(
            statements(self.dialect, where.order).entry, [where.board, where.period, open_id]
        )
        if not rows:
            return None
        rank, score, public_id, display_name, avatar_url = rows[0]
        return render(rank, score, public_id, display_name, avatar_url)

    async def around(
        self, where: BoardPeriod, open_id: str, radius: int, render: Render[T]
    ) -> list[T]:
        """The entries ranked within ``radius`` of the player, best first; ``[]`` without one."""
        rows = await self._rows(
            statements(self.dialect, where.order).around,
            [where.board, where.period, open_id, radius],
        )
        if not rows:
            return []
        first = rows[0][0]
        return [
            render(first + offset, row[1], row[2], row[3], row[4])
            for offset, row in enumerate(rows)
        ]

    async def hand_over(self, open_id: str, to: str, *, using_db: BaseDBAsyncClient) -> int:
        """Move every row of the player to the player ``to``, inside the caller's transaction;
        how many moved."""
        rows = ScoreRow.filter(player_id=open_id).using_db(using_db)
        moved: int = await rows.update(player_id=to)
        return moved

    async def delete_all_of(
        self, open_id: str, *, now: datetime, using_db: BaseDBAsyncClient
    ) -> int:
        """Delete every row of the player, inside the caller's transaction, recording each one
        as removed (the rank indexes follow the removals); how many went."""
        rows = ScoreRow.filter(player_id=open_id).using_db(using_db)
        deleted = await rows.values_list("id", "board", "period")
        count: int = await rows.delete()
        await self._removals.record(
            [(int(row_id), board, period) for row_id, board, period in deleted],
            now=now,
            using_db=using_db,
        )
        return count

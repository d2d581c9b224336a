"""Which rank index serves the boards, and how an index reads the scores from the store.

``TTMINIS_RANK_INDEX`` picks it: ``memory`` (in process, one server), ``redis`` (shared by
several processes), ``database`` (none: ranks are counted), or ``auto`` (Redis when
``TTMINIS_REDIS_URL`` is set, else memory).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING

from tiktok_minis.errors import ConfigurationError
from tiktok_minis.ranking import Loader, MemoryRankIndex, NoRankIndex, RankIndex, Row, rank_key
from tiktok_minis.ranking.keys import Order, micros
from tiktok_minis.services.boards import BoardRegistry
from tiktok_minis.store import Store
from tiktok_minis.store.scores import BoardPeriod

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from tiktok_minis.ranking.redis import Sweep

__all__ = ["index_loader", "index_sweep", "rank_index_for", "row_key"]


def row_key(order: Order, row_id: int, score: int, reached_at: datetime) -> int:
    """A score row's place in its board's order, as every rank index keeps it."""
    return rank_key(order, score, micros(reached_at), row_id)


def index_loader(store: Store) -> Loader:
    """A rank index's :data:`~tiktok_minis.ranking.Loader`: a board period's rows from
    ``store``, best first, with their keys."""

    async def load(board: str, period: str, order: Order) -> AsyncIterator[list[Row]]:
        async for batch in store.scores.load(BoardPeriod(board, period, order)):
            yield [
                Row(row_id, version, row_key(order, row_id, score, reached))
                for row_id, version, score, reached in batch
            ]

    return load


def index_sweep(store: Store, boards: BoardRegistry) -> Sweep:
    """A shared rank index's repair: the rows written since a time, with their keys, for the
    boards the game defines (it re-applies them; the versions make that harmless)."""

    async def sweep(since: datetime) -> AsyncIterator[list[tuple[str, str, Order, Row]]]:
        written = await store.scores.written_since(since)
        rows = []
        for board, period, (row_id, version, score, reached) in written:
            if board in boards:
                order = boards.get(board).order
                key = row_key(order, row_id, score, reached)
                rows.append((board, period, order, Row(row_id, version, key)))
        yield rows

    return sweep


def rank_index_for(
    choice: str, *, store: Store, boards: BoardRegistry, redis: Redis | None, prefix: str
) -> RankIndex:
    """The rank index ``choice`` (``TTMINIS_RANK_INDEX``) asks for; Redis keys under ``prefix``."""
    if choice == "auto":
        choice = "redis" if redis is not None else "memory"
    if choice == "memory":
        return MemoryRankIndex(index_loader(store))
    if choice == "redis":
        if redis is None:
            raise ConfigurationError("TTMINIS_RANK_INDEX=redis needs TTMINIS_REDIS_URL.")
        from tiktok_minis.ranking.redis import RedisRankIndex  # the redis extra is in

        return RedisRankIndex(
            redis, index_loader(store), prefix=prefix, sweep=index_sweep(store, boards)
        )
    return NoRankIndex()

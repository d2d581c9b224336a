"""What every rank index offers, and what it is built from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import NamedTuple, Protocol

from tiktok_minis.ranking.keys import Order

__all__ = ["Loader", "NoRankIndex", "RankIndex", "Row"]


class Row(NamedTuple):
    """A score row as an index holds it: its id, its write version and its key."""

    id: int
    version: int
    key: int


#: Reads a board period's rows from the database, in batches: ``loader(board, period, order)``.
Loader = Callable[[str, str, Order], AsyncIterator[list[Row]]]


class RankIndex(Protocol):
    """An exact rank index of every board and period, kept beside the database.

    Reads answer ``None`` while the board's period is not loaded (the first use starts loading
    it) or cannot be read: the caller then asks the database. Writes are applied after the
    database committed them; a row's writes may arrive out of order across processes, and the
    ``version`` decides. Ranks and positions are 1-based.
    """

    async def start(self) -> None:
        """Begin the background work (loading, eviction of idle periods)."""

    async def close(self) -> None:
        """Stop it and drop what is held. Closing twice is harmless."""

    async def ready(self, board: str, period: str, order: Order) -> bool:
        """Load the board period now if it is not loaded (a warm-up, a test); whether it is."""

    async def apply(self, board: str, period: str, order: Order, row: Row) -> None:
        """Insert a row, or move it to its new key (a write committed in the database)."""

    async def remove(self, board: str, period: str, row_ids: list[int]) -> None:
        """Drop rows the database deleted; they never come back under the same id."""

    async def rank(self, board: str, period: str, order: Order, key: int) -> int | None:
        """1 + how many rows rank ahead of ``key`` (the row itself need not be held)."""

    async def keys(
        self, board: str, period: str, order: Order, first: int, last: int
    ) -> list[int] | None:
        """The keys ranked ``first`` to ``last`` (inclusive, 1-based), best first."""


class NoRankIndex:
    """No rank index (``TTMINIS_RANK_INDEX=database``): every rank is counted in the database."""

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""

    async def ready(self, board: str, period: str, order: Order) -> bool:
        """Never loaded: the database answers."""
        return False

    async def apply(self, board: str, period: str, order: Order, row: Row) -> None:
        """Nothing to keep."""

    async def remove(self, board: str, period: str, row_ids: list[int]) -> None:
        """Nothing to drop."""

    async def rank(self, board: str, period: str, order: Order, key: int) -> int | None:
        """Never known here."""
        return None

    async def keys(
        self, board: str, period: str, order: Order, first: int, last: int
    ) -> list[int] | None:
        """Never known here."""
        return None
